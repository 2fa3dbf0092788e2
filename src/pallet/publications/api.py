"""Routes of publications, addressed by id."""

from __future__ import annotations

from typing import Annotated, Iterable

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from pallet.orphans.service import LOCK as ORPHANS_LOCK
from pallet.api.deps import Reader, RuntimeDep, Writer, dispatch
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.errors import Invalid
from pallet.publications import service, tasks
from pallet.publications.models import Publication
from pallet.publications.schemas import (MetadataFileRead, PublicationCreate, PublicationRead,
                                         publication_href)
from pallet.repositories import versions
from pallet.repositories.models import Repository, RepositoryVersion
from pallet.repositories.service import get_repository, lock_name
from pallet.tasks.schemas import TaskRead

router = APIRouter(prefix="/publications", tags=["publications"])
PublicationId = Annotated[int, Path(ge=0, le=2**63 - 1)]


def reads(session: Session, publications: Iterable[Publication]) -> list[PublicationRead]:
    """Publications as the API shows them, with a few queries for the whole page."""
    publications = list(publications)
    names = dict(session.execute(select(Repository.id, Repository.name).where(
        Repository.id.in_({p.repository_id for p in publications}))).all())
    numbers = dict(session.execute(select(RepositoryVersion.id, RepositoryVersion.number).where(
        RepositoryVersion.id.in_({p.version_id for p in publications}))).all())
    files = service.metadata_files(session, [p.id for p in publications])
    result = []
    for publication in publications:
        name, number = names[publication.repository_id], numbers[publication.version_id]
        repository_href = f"/api/v1/repositories/{name}"
        result.append(PublicationRead(
            id=publication.id, href=publication_href(publication.id), repository=name,
            repository_href=repository_href, version=number,
            version_href=f"{repository_href}/versions/{number}", type=publication.type,
            options=publication.options, pass_through=publication.pass_through,
            metadata_files=[MetadataFileRead(relative_path=path, sha256=sha256, size=size)
                            for path, sha256, size in files.get(publication.id, [])],
            created_at=publication.created_at))
    return result


@router.post("", status_code=202, response_model=TaskRead,
             responses={202: {"model": TaskRead, "description": "Queued as a task."}})
def create_publication(body: PublicationCreate, runtime: RuntimeDep,
                       principal: Writer) -> JSONResponse:
    """Publish a version (default: the newest when the task runs). The same version with
    the same options is published once: the task then answers the existing publication."""
    with runtime.db.read() as session:
        repository = get_repository(session, body.repository)
        if body.version is not None:
            versions.get_version(session, repository, body.version)
        service.validate_options(runtime.plugins, repository, body.options)
    return dispatch(runtime, principal, tasks.create,
                    shared=[lock_name(repository), ORPHANS_LOCK],
                    repository_id=repository.id, version=body.version, options=body.options)


@router.get("", response_model=Page[PublicationRead])
def list_publications(request: Request, runtime: RuntimeDep, _: Reader, paging: Paging,
                      repository: str | None = None,
                      version: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None):
    """Publications, newest first."""
    with runtime.db.read() as session:
        found = version_row = None
        if repository is not None:
            found = get_repository(session, repository)
            if version is not None:
                version_row = versions.get_version(session, found, version)
        elif version is not None:
            raise Invalid("the version filter needs the repository filter",
                          details={"field": "version"})
        count, items = service.list_publications(session, repository=found,
                                                 version=version_row, limit=paging.limit,
                                                 offset=paging.offset)
        return page(request, paging, count, reads(session, items), lambda read: read)


@router.get("/{publication_id}", response_model=PublicationRead)
def show_publication(publication_id: PublicationId, runtime: RuntimeDep, _: Reader):
    with runtime.db.read() as session:
        return reads(session, [service.get_publication(session, publication_id)])[0]


@router.delete("/{publication_id}", status_code=204)
def delete_publication(publication_id: PublicationId, runtime: RuntimeDep, _: Writer) -> None:
    """Delete a publication, unless a distribution names it."""
    with runtime.db.write() as session:
        service.delete_publication(session, service.get_publication(session, publication_id))
