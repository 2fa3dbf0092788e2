"""Users and API tokens. Functions over an explicit session."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from datetime import timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pallet.auth.models import ApiToken, User
from pallet.auth.passwords import VerifiedCache, generate_password, hash_password, new_token, token_hash
from pallet.auth.permissions import ADMIN, ROLES, permissions_of
from pallet.db.base import utcnow
from pallet.errors import Conflict, Invalid, NotFound, Unauthorized

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,149}$")
MIN_PASSWORD = 8


@dataclass(frozen=True)
class Principal:
    """Who is calling, and what they may do."""

    username: str
    roles: tuple[str, ...]
    permissions: frozenset[str]


@cache
def _unknown_user_hash() -> str:
    return hash_password(generate_password())


def _principal(user: User) -> Principal:
    return Principal(user.username, tuple(user.roles), permissions_of(user.roles))


def _check_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise Invalid(f"roles must be some of {', '.join(sorted(ROLES))}",
                      details={"unknown": unknown, "known": sorted(ROLES)})
    return sorted(set(roles))


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"a password needs at least {MIN_PASSWORD} characters",
                      details={"field": "password"})
    return password


def create_user(session: Session, *, username: str, password: str,
                roles: list[str]) -> User:
    if not USERNAME.match(username or ""):
        raise Invalid(f"user name {username[:80]!r} is not allowed",
                      details={"field": "username"})
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"a user named {username!r} exists already",
                       details={"username": username})
    user = User(username=username, password_hash=hash_password(_check_password(password)),
                roles=_check_roles(roles), is_active=True)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"there is no user named {username!r}", details={"username": username})
    return user


def list_users(session: Session, *, limit: int = 100, offset: int = 0
               ) -> tuple[int, list[User]]:
    count = session.scalar(select(func.count()).select_from(User))
    return count, list(session.scalars(select(User).order_by(User.username)
                                       .limit(limit).offset(offset)))


def _is_admin(roles: list[str], is_active: bool) -> bool:
    return is_active and ADMIN in permissions_of(roles)


def _keep_an_admin(session: Session, user: User, what: str) -> None:
    """Refuse to take the last active admin away: nobody could manage users then. The
    active users' rows are locked in one order (on PostgreSQL; SQLite has one writer), so
    two admins demoting each other at once wait for each other and cannot both pass."""
    active = session.scalars(select(User).where(User.is_active.is_(True))
                             .order_by(User.id).with_for_update()
                             .execution_options(populate_existing=True))
    if not any(_is_admin(other.roles, True) for other in active if other.id != user.id):
        raise Conflict(f"{user.username!r} is the last active admin and cannot be {what}: "
                       "make another user an admin first", code="last_admin",
                       details={"username": user.username})


def update_user(session: Session, user: User, *, password: str | None = None,
                roles: list[str] | None = None, is_active: bool | None = None) -> User:
    roles = _check_roles(roles) if roles is not None else user.roles
    active = is_active if is_active is not None else user.is_active
    if _is_admin(user.roles, user.is_active) and not _is_admin(roles, active):
        _keep_an_admin(session, user, "demoted" if active else "deactivated")
    if password is not None:
        user.password_hash = hash_password(_check_password(password))
    user.roles, user.is_active = roles, active
    session.flush()
    return user


def delete_user(session: Session, user: User) -> None:
    if _is_admin(user.roles, user.is_active):
        _keep_an_admin(session, user, "deleted")
    session.delete(user)
    session.flush()


def ensure_first_admin(session: Session, password: str = "") -> str | None:
    """Create `admin` if there is no user at all; return its password if it was generated."""
    if session.scalar(select(func.count()).select_from(User)):
        return None
    chosen = password or generate_password()
    create_user(session, username="admin", password=chosen, roles=["admin"])
    return None if password else chosen


def authenticate_basic(session: Session, cache: VerifiedCache, username: str,
                       password: str) -> Principal:
    user = session.scalar(select(User).where(User.username == username))
    # An unknown name costs the same hash as a known one, so timing does not tell them apart.
    stored = user.password_hash if user is not None else _unknown_user_hash()
    if not cache.check(username, password, stored) or user is None or not user.is_active:
        raise Unauthorized("wrong user name or password")
    return _principal(user)


def authenticate_token(session: Session, token: str) -> Principal:
    row = session.execute(select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                          .where(ApiToken.token_hash == token_hash(token))).first()
    if row is None or not row.User.is_active:
        raise Unauthorized("the API token is not valid")
    expires = row.ApiToken.expires_at
    if expires is not None:
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
        if expires <= utcnow():
            raise Unauthorized("the API token has expired")
    return _principal(row.User)


def create_token(session: Session, user: User, *, name: str,
                 expires_in_days: int | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`; the token text is returned once and never stored."""
    if not name or len(name) > 150:
        raise Invalid("a token needs a name of 1 to 150 characters", details={"field": "name"})
    if expires_in_days is not None and not 1 <= expires_in_days <= 36_500:
        raise Invalid("expires_in_days must be between 1 and 36500",
                      details={"field": "expires_in_days"})
    token = new_token()
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    row = ApiToken(user_id=user.id, name=name, token_hash=token_hash(token),
                   expires_at=expires_at)
    session.add(row)
    session.flush()
    return row, token


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                                .order_by(ApiToken.id)))


def delete_token(session: Session, user: User, token_id: int) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.id == token_id,
                                                ApiToken.user_id == user.id))
    if row is None:
        raise NotFound(f"you have no token {token_id}", details={"token": token_id})
    session.delete(row)
    session.flush()

