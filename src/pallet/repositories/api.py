from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from pallet.api.deps import Reader, RuntimeDep, Writer, dispatch
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.errors import Invalid
from pallet.content.models import Content
from pallet.content.schemas import ContentRead, content_read
from pallet.remotes.models import Remote
from pallet.orphans.service import LOCK as ORPHANS_LOCK
from pallet.repositories import service, tasks, versions
from pallet.repositories.models import RepositoryVersion
from pallet.repositories.schemas import (CopyRequest, DiffRead, ModifyRequest, RepairRequest,
                                         RepositoryCreate,
                                         RepositoryRead, RepositoryUpdate, VersionRead,
                                         repository_read, version_read)
from pallet.tasks.schemas import TaskGroupRead, TaskRead, group_read
from pallet.tasks.service import create_group, enqueue

router = APIRouter(prefix="/repositories", tags=["repositories"])
ACCEPTED = {202: {"model": TaskRead, "description": "Queued as a task."}}


def _read(session, repository) -> RepositoryRead:
    remote = session.get(Remote, repository.remote_id) if repository.remote_id else None
    return repository_read(repository, versions.latest_version(session, repository).number,
                           remote.name if remote is not None else None)


@router.get("", response_model=Page[RepositoryRead])
def list_repositories(request: Request, runtime: RuntimeDep, _: Reader, paging: Paging,
                      name: str | None = None, name_contains: str | None = None,
                      type: str | None = None):
    with runtime.db.read() as session:
        count, items = service.list_repositories(session, name=name, name_contains=name_contains,
                                                 type=type, limit=paging.limit,
                                                 offset=paging.offset)
        return page(request, paging, count, items, lambda r: _read(session, r))


@router.post("", status_code=201, response_model=RepositoryRead)
def create_repository(body: RepositoryCreate, runtime: RuntimeDep, _: Writer):
    with runtime.db.write() as session:
        repository = service.create_repository(session, runtime.plugins, **body.model_dump())
        return _read(session, repository)


@router.get("/{name}", response_model=RepositoryRead)
def show_repository(name: str, runtime: RuntimeDep, _: Reader):
    with runtime.db.read() as session:
        return _read(session, service.get_repository(session, name))


@router.patch("/{name}", response_model=RepositoryRead)
def update_repository(name: str, body: RepositoryUpdate, runtime: RuntimeDep, _: Writer):
    changes = body.model_dump(exclude_unset=True)
    with runtime.db.write() as session:
        repository = service.get_repository(session, name)
        service.update_repository(session, repository, plugins=runtime.plugins, **changes)
        return _read(session, repository)


@router.delete("/{name}", status_code=202, response_model=TaskRead, responses=ACCEPTED)
def delete_repository(name: str, runtime: RuntimeDep, principal: Writer) -> JSONResponse:
    with runtime.db.read() as session:
        repository = service.get_repository(session, name)
    return dispatch(runtime, principal, tasks.delete_repository,
                    exclusive=[service.lock_name(repository)], repository_id=repository.id)


@router.post("/{name}/modify", status_code=202, response_model=TaskRead, responses=ACCEPTED)
def modify_repository(name: str, body: ModifyRequest, runtime: RuntimeDep,
                      principal: Writer) -> JSONResponse:
    with runtime.db.read() as session:
        repository = service.get_repository(session, name)
        if body.base_version is not None:
            versions.get_version(session, repository, body.base_version)
    # Auto-publishing stores metadata artifacts: never while orphan cleanup runs.
    return dispatch(runtime, principal, tasks.modify,
                    exclusive=[service.lock_name(repository)], shared=[ORPHANS_LOCK],
                    repository_id=repository.id,
                    **body.model_dump())


@router.post("/{name}/copy", status_code=202, response_model=TaskRead, responses=ACCEPTED)
def copy_into_repository(name: str, body: CopyRequest, runtime: RuntimeDep,
                         principal: Writer) -> JSONResponse:
    """Copy units of another repository's version (by id or by field values, with what they
    reference and optionally their dependencies) into a new version of this one."""
    with runtime.db.read() as session:
        repository = service.get_repository(session, name)
        source = service.get_repository(session, body.source)
        if source.id == repository.id:
            raise Invalid("a copy goes from one repository into another; to bring back an "
                          "older version use modify with base_version",
                          details={"field": "source"})
        if source.type != repository.type:
            raise Invalid(f"repository {source.name!r} is a {source.type} repository and "
                          f"{name!r} a {repository.type} one", details={"field": "source"})
        if body.source_version is not None:
            versions.get_version(session, source, body.source_version)
        if not body.content and not body.match:
            raise Invalid("name the units to copy: content ids, or matches by field values",
                          details={"field": "match"})
        allowed = runtime.plugins.repository_type(source.type).content_types
        for criterion in body.match:
            if criterion.type not in allowed:
                raise Invalid(f"cannot match units of type {criterion.type[:64]!r} in a "
                              f"{source.type} repository; it holds {', '.join(allowed)}",
                              details={"field": "match", "allowed": list(allowed)})
        if body.dependencies and runtime.plugins.repository_type(source.type).dependencies \
                is None:
            raise Invalid(f"{source.type} repositories have no dependencies to solve",
                          details={"field": "dependencies"})
    return dispatch(runtime, principal, tasks.copy,
                    exclusive=[service.lock_name(repository)],
                    shared=[ORPHANS_LOCK, service.lock_name(source)],
                    repository_id=repository.id, source_id=source.id,
                    source_version=body.source_version, content=body.content,
                    match=[m.model_dump() for m in body.match], references=body.references,
                    dependencies=body.dependencies)


@router.get("/{name}/versions", response_model=Page[VersionRead])
def list_versions(name: str, request: Request, runtime: RuntimeDep, _: Reader, paging: Paging):
    with runtime.db.read() as session:
        repository = service.get_repository(session, name)
        count, items = versions.list_versions(session, repository, limit=paging.limit,
                                              offset=paging.offset)
        return page(request, paging, count, items, lambda v: version_read(repository, v))


@router.get("/{name}/versions/{number}", response_model=VersionRead)
def show_version(name: str, number: int, runtime: RuntimeDep, _: Reader):
    with runtime.db.read() as session:
        repository = service.get_repository(session, name)
        return version_read(repository, versions.get_version(session, repository, number))


@router.delete("/{name}/versions/{number}", status_code=202, response_model=TaskRead,
               responses=ACCEPTED)
def delete_version(name: str, number: int, runtime: RuntimeDep, principal: Writer):
    with runtime.db.read() as session:
        repository = service.get_repository(session, name)
        versions.get_version(session, repository, number)
    return dispatch(runtime, principal, tasks.delete_version,
                    exclusive=[service.lock_name(repository)], repository_id=repository.id,
                    number=number)


@router.post("/{name}/versions/{number}/repair", status_code=202, response_model=TaskRead,
             responses=ACCEPTED)
def repair_version(name: str, number: int, runtime: RuntimeDep, principal: Writer,
                   body: RepairRequest | None = None):
    """Re-hash a version's artifacts, fetch the missing and corrupt ones again from their
    remotes (unless `report_only`), and report what was restored and what stays broken."""
    with runtime.db.read() as session:
        repository = service.get_repository(session, name)
        versions.get_version(session, repository, number)
    return dispatch(runtime, principal, tasks.repair, shared=[service.lock_name(repository)],
                    repository_id=repository.id, number=number,
                    report_only=(body or RepairRequest()).report_only)


@router.post("/{name}/repair", status_code=202, response_model=TaskGroupRead)
def repair_repository(name: str, runtime: RuntimeDep, principal: Writer,
                      body: RepairRequest | None = None) -> JSONResponse:
    """Repair every version, one task each, gathered in a task group."""
    report_only = (body or RepairRequest()).report_only
    with runtime.db.write() as session:
        repository = service.get_repository(session, name)
        numbers = list(session.scalars(select(RepositoryVersion.number)
                                       .where(RepositoryVersion.repository_id == repository.id)
                                       .order_by(RepositoryVersion.number)))
        group = create_group(session, f"repair of repository {name}")
        for number in numbers:
            enqueue(session, tasks.repair, shared=[service.lock_name(repository)],
                    group_id=group.id, created_by=principal.username,
                    repository_id=repository.id, number=number, report_only=report_only)
        body = group_read(session, group)
    runtime.wakeup.set()
    return JSONResponse(status_code=202, content=body.model_dump(mode="json"),
                        headers={"Location": body.href})


@router.get("/{name}/versions/{number}/diff/{base}", response_model=DiffRead)
def diff_versions(name: str, number: int, base: int, runtime: RuntimeDep, _: Reader):
    """What going from version `base` to version `number` adds and removes, per type."""
    with runtime.db.read() as session:
        repository = service.get_repository(session, name)
        versions.get_version(session, repository, number)
        versions.get_version(session, repository, base)
        href = f"/api/v1/repositories/{name}/versions/{number}/diff/{base}/content"
        return DiffRead(repository=name, base_version=base, version=number,
                        counts=versions.diff_counts(session, repository, base, number),
                        added_href=f"{href}?change=added", removed_href=f"{href}?change=removed")


@router.get("/{name}/versions/{number}/diff/{base}/content", response_model=Page[ContentRead])
def diff_content(name: str, number: int, base: int, request: Request, runtime: RuntimeDep,
                 _: Reader, paging: Paging,
                 change: Annotated[Literal["added", "removed"], Query()] = "added"):
    with runtime.db.read() as session:
        repository = service.get_repository(session, name)
        versions.get_version(session, repository, number)
        versions.get_version(session, repository, base)
        query = versions.diff_content_query(repository, base, number, change)
        count = session.scalar(select(func.count()).select_from(query.subquery()))
        items = session.scalars(query.order_by(Content.id).limit(paging.limit)
                                .offset(paging.offset)).all()
        return page(request, paging, count, items, content_read)
