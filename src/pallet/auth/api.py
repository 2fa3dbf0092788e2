from __future__ import annotations

from fastapi import APIRouter, Request

from pallet.api.deps import Admin, Reader, RuntimeDep
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.auth import service
from pallet.auth.models import User
from pallet.auth.schemas import (MeRead, TokenCreate, TokenCreated, TokenRead, UserCreate,
                                 UserRead, UserUpdate)

router = APIRouter(tags=["users"])


def _user(user: User) -> UserRead:
    return UserRead(username=user.username, href=f"/api/v1/users/{user.username}",
                    roles=user.roles, is_active=user.is_active, created_at=user.created_at)


@router.get("/me", response_model=MeRead)
def me(principal: Reader):
    return MeRead(username=principal.username, roles=list(principal.roles),
                  permissions=sorted(principal.permissions))


@router.get("/users", response_model=Page[UserRead])
def list_users(request: Request, runtime: RuntimeDep, _: Admin, paging: Paging):
    with runtime.db.read() as session:
        count, items = service.list_users(session, limit=paging.limit, offset=paging.offset)
        return page(request, paging, count, items, _user)


@router.post("/users", status_code=201, response_model=UserRead)
def create_user(body: UserCreate, runtime: RuntimeDep, _: Admin):
    with runtime.db.write() as session:
        return _user(service.create_user(session, **body.model_dump()))


@router.get("/users/{username}", response_model=UserRead)
def show_user(username: str, runtime: RuntimeDep, _: Admin):
    with runtime.db.read() as session:
        return _user(service.get_user(session, username))


@router.patch("/users/{username}", response_model=UserRead)
def update_user(username: str, body: UserUpdate, runtime: RuntimeDep, _: Admin):
    with runtime.db.write() as session:
        user = service.get_user(session, username)
        return _user(service.update_user(session, user, **body.model_dump(exclude_unset=True)))


@router.delete("/users/{username}", status_code=204)
def delete_user(username: str, runtime: RuntimeDep, _: Admin) -> None:
    with runtime.db.write() as session:
        service.delete_user(session, service.get_user(session, username))


@router.get("/tokens", response_model=list[TokenRead])
def list_tokens(runtime: RuntimeDep, principal: Reader):
    with runtime.db.read() as session:
        user = service.get_user(session, principal.username)
        return [TokenRead.model_validate(t) for t in service.list_tokens(session, user)]


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token(body: TokenCreate, runtime: RuntimeDep, principal: Reader):
    """A token for yourself; it carries your roles."""
    with runtime.db.write() as session:
        user = service.get_user(session, principal.username)
        row, token = service.create_token(session, user, name=body.name,
                                          expires_in_days=body.expires_in_days)
        return TokenCreated(id=row.id, name=row.name, created_at=row.created_at,
                            expires_at=row.expires_at, token=token)


@router.delete("/tokens/{token_id}", status_code=204)
def delete_token(token_id: int, runtime: RuntimeDep, principal: Reader) -> None:
    with runtime.db.write() as session:
        service.delete_token(session, service.get_user(session, principal.username), token_id)
