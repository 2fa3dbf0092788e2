"""Repositories: create, find, list, update, delete. Functions over an explicit session."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pallet.errors import Conflict, Invalid, NotFound
from pallet.plugins import Registry
from pallet.repositories.contentset import EMPTY_DIGEST, EMPTY_STATE
from pallet.repositories.models import Repository, RepositoryVersion

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def lock_name(repository: Repository) -> str:
    """The task-lock resource of a repository (by id, so a rename keeps it)."""
    return f"repository:{repository.id}"


def validate_name(name: str, what: str = "repository") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise Invalid(f"{what} name {str(name)[:80]!r} is not allowed: use 1 to 255 letters, "
                      "digits, '.', '_' or '-', starting with a letter or digit",
                      details={"field": "name"})
    return name


def create_repository(session: Session, plugins: Registry, *, name: str, type: str,
                      description: str = "", retain_versions: int | None = None) -> Repository:
    validate_name(name)
    plugins.repository_type(type)
    _check_retention(retain_versions)
    if session.scalar(select(Repository.id).where(Repository.name == name)) is not None:
        raise Conflict(f"a repository named {name!r} exists already", details={"name": name})
    repository = Repository(name=name, type=type, description=description,
                            retain_versions=retain_versions, next_version=1)
    session.add(repository)
    try:
        session.flush()
    except IntegrityError:  # created by someone else between the check and here
        raise Conflict(f"a repository named {name!r} exists already",
                       details={"name": name}) from None
    session.add(RepositoryVersion(repository_id=repository.id, number=0, counts={},
                                  lthash=EMPTY_STATE, digest=EMPTY_DIGEST))
    session.flush()
    return repository


def get_repository(session: Session, name: str) -> Repository:
    repository = session.scalar(select(Repository).where(Repository.name == name))
    if repository is None:
        raise NotFound(f"there is no repository named {name!r}", details={"name": name})
    return repository


def list_repositories(session: Session, *, name: str | None = None,
                      name_contains: str | None = None, type: str | None = None,
                      limit: int = 100, offset: int = 0) -> tuple[int, list[Repository]]:
    query = select(Repository)
    if name is not None:
        query = query.where(Repository.name == name)
    if name_contains:
        query = query.where(Repository.name.contains(name_contains, autoescape=True))
    if type is not None:
        query = query.where(Repository.type == type)
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    items = session.scalars(query.order_by(Repository.name).limit(limit).offset(offset)).all()
    return count, list(items)


def update_repository(session: Session, repository: Repository, *, name: str | None = None,
                      description: str | None = None,
                      retain_versions: int | None | type(...) = ...) -> Repository:
    if name is not None and name != repository.name:
        validate_name(name)
        if session.scalar(select(Repository.id).where(Repository.name == name)) is not None:
            raise Conflict(f"a repository named {name!r} exists already", details={"name": name})
        repository.name = name
    if description is not None:
        repository.description = description
    if retain_versions is not ...:
        _check_retention(retain_versions)
        repository.retain_versions = retain_versions
    session.flush()
    return repository


def delete_repository(session: Session, repository: Repository) -> None:
    """Delete a repository and its versions; its content stays until orphan cleanup."""
    session.delete(repository)
    session.flush()


def _check_retention(retain_versions: int | None) -> None:
    if retain_versions is not None and retain_versions < 1:
        raise Invalid("retain_versions must be at least 1, or null to keep every version",
                      details={"field": "retain_versions"})
