"""Repositories: create, find, list, update, delete. Functions over an explicit session."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pallet.errors import Conflict, Invalid, NotFound
from pallet.plugins import Registry
from pallet.publications.service import validate_options
from pallet.remotes.models import Remote
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
                      description: str = "", retain_versions: int | None = None,
                      remote: str | None = None, autopublish: bool = False,
                      publish_options: dict[str, Any] | None = None) -> Repository:
    validate_name(name)
    plugins.repository_type(type)
    _check_retention(retain_versions)
    if session.scalar(select(Repository.id).where(Repository.name == name)) is not None:
        raise Conflict(f"a repository named {name!r} exists already", details={"name": name})
    repository = Repository(name=name, type=type, description=description,
                            retain_versions=retain_versions, next_version=1,
                            remote_id=_remote_id(session, remote, type),
                            autopublish=autopublish)
    repository.publish_options = _publish_options(plugins, repository, publish_options)
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
                      retain_versions: int | None | type(...) = ...,
                      remote: str | None | type(...) = ..., autopublish: bool | None = None,
                      publish_options: dict[str, Any] | None | type(...) = ...,
                      plugins: Registry | None = None) -> Repository:
    """Change what is given; `...` or None leave a field as it is, except that a None
    `remote` removes the remote and a None `publish_options` restores the defaults.
    Changing `autopublish` or `publish_options` needs the `plugins` to check them."""
    if remote is not ...:
        remote_id = _remote_id(session, remote, repository.type)
    if autopublish is not None or publish_options is not ...:
        if plugins is None:
            raise ValueError("update_repository needs the plugins to check publish options")
        if autopublish is not None:
            repository.autopublish = autopublish
        given = repository.publish_options if publish_options is ... else publish_options
        repository.publish_options = _publish_options(plugins, repository, given)
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
    if remote is not ...:
        repository.remote_id = remote_id
    session.flush()
    return repository


def delete_repository(session: Session, repository: Repository) -> None:
    """Delete a repository and its versions; its content stays until orphan cleanup."""
    session.delete(repository)
    session.flush()


def _remote_id(session: Session, name: str | None, repository_type: str) -> int | None:
    """The id of the remote named `name` (None: no remote), which must be of the type."""
    if name is None:
        return None
    remote = session.scalar(select(Remote).where(Remote.name == name))
    if remote is None:
        raise NotFound(f"there is no remote named {name!r}", details={"remote": name})
    if remote.type != repository_type:
        raise Invalid(f"remote {name!r} is of type {remote.type!r}, not {repository_type!r} "
                      "like the repository", details={"remote": name, "type": remote.type})
    return remote.id


def _publish_options(plugins: Registry, repository: Repository,
                     options: dict[str, Any] | None) -> dict[str, Any]:
    """Publish options as stored: those given, checked against the repository's type. A
    type without publications takes none, and cannot auto-publish."""
    if not options and not repository.autopublish:
        return {}
    parsed = validate_options(plugins, repository, options)
    return parsed.model_dump(mode="json", exclude_unset=True)


def _check_retention(retain_versions: int | None) -> None:
    if retain_versions is not None and retain_versions < 1:
        raise Invalid("retain_versions must be at least 1, or null to keep every version",
                      details={"field": "retain_versions"})
