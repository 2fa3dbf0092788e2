"""Routes of distributions, addressed by name."""

from __future__ import annotations

from typing import Any, Iterable
from urllib.parse import quote

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from pallet.api.deps import Reader, RuntimeDep, Writer
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.distributions import service
from pallet.distributions.models import Distribution
from pallet.distributions.schemas import (TARGET_FIELDS, DistributionCreate, DistributionRead,
                                          DistributionUpdate, VersionRef, VersionTargetRead)
from pallet.errors import Invalid
from pallet.publications.schemas import publication_href
from pallet.publications.service import get_publication
from pallet.repositories import versions
from pallet.repositories.models import Repository, RepositoryVersion
from pallet.repositories.service import get_repository

router = APIRouter(prefix="/distributions", tags=["distributions"])
CONTENT = "/pallet/content"


def resolve_target(session: Session, publication: int | None = None,
                   repository: str | None = None,
                   repository_version: VersionRef | dict | None = None) -> service.Target:
    """The target a body names (at most one of the three), checked to exist."""
    given = [k for k, v in (("publication", publication), ("repository", repository),
                            ("repository_version", repository_version)) if v is not None]
    if len(given) > 1:
        raise Invalid(f"a distribution serves one target at most; got {' and '.join(given)}",
                      details={"fields": given})
    if publication is not None:
        return service.Target(publication_id=get_publication(session, publication).id)
    if repository is not None:
        return service.Target(repository_id=get_repository(session, repository).id)
    if repository_version is not None:
        ref = VersionRef.model_validate(repository_version)
        owner = get_repository(session, ref.repository)
        return service.Target(
            repository_version_id=versions.get_version(session, owner, ref.version).id)
    return service.NOTHING


def reads(session: Session, distributions: Iterable[Distribution]) -> list[DistributionRead]:
    """Distributions as the API shows them, with a few queries for the whole page."""
    distributions = list(distributions)
    names = dict(session.execute(select(Repository.id, Repository.name).where(
        Repository.id.in_({d.repository_id for d in distributions if d.repository_id}))).all())
    served_versions = {row.id: row for row in session.execute(
        select(RepositoryVersion.id, RepositoryVersion.number, Repository.name)
        .join(Repository, Repository.id == RepositoryVersion.repository_id)
        .where(RepositoryVersion.id.in_({d.repository_version_id for d in distributions
                                         if d.repository_version_id})))}
    return [_read(d, names, served_versions) for d in distributions]


def _read(distribution: Distribution, names: dict[int, str],
          served_versions: dict[int, Any]) -> DistributionRead:
    repository = names.get(distribution.repository_id)
    version = served_versions.get(distribution.repository_version_id)
    publication = distribution.publication_id
    return DistributionRead(
        name=distribution.name, href=f"/api/v1/distributions/{distribution.name}",
        base_path=distribution.base_path,
        base_url=f"{CONTENT}/{quote(distribution.base_path)}/", hidden=distribution.hidden,
        publication=publication,
        publication_href=publication_href(publication) if publication is not None else None,
        repository=repository,
        repository_href=f"/api/v1/repositories/{repository}" if repository else None,
        repository_version=VersionTargetRead(
            repository=version.name, version=version.number,
            href=f"/api/v1/repositories/{version.name}/versions/{version.number}")
        if version is not None else None,
        created_at=distribution.created_at, updated_at=distribution.updated_at)


@router.get("", response_model=Page[DistributionRead])
def list_distributions(request: Request, runtime: RuntimeDep, _: Reader, paging: Paging,
                       name: str | None = None, base_path: str | None = None,
                       hidden: bool | None = None):
    """Distributions by name, hidden ones included (the `hidden` filter picks)."""
    with runtime.db.read() as session:
        count, items = service.list_distributions(session, name=name, base_path=base_path,
                                                  hidden=hidden, limit=paging.limit,
                                                  offset=paging.offset)
        return page(request, paging, count, reads(session, items), lambda read: read)


@router.post("", status_code=201, response_model=DistributionRead)
def create_distribution(body: DistributionCreate, runtime: RuntimeDep, _: Writer):
    with runtime.db.write() as session:
        target = resolve_target(session, body.publication, body.repository,
                                body.repository_version)
        distribution = service.create_distribution(session, name=body.name,
                                                   base_path=body.base_path, target=target,
                                                   hidden=body.hidden)
        return reads(session, [distribution])[0]


@router.get("/{name}", response_model=DistributionRead)
def show_distribution(name: str, runtime: RuntimeDep, _: Reader):
    with runtime.db.read() as session:
        return reads(session, [service.get_distribution(session, name)])[0]


@router.patch("/{name}", response_model=DistributionRead)
def update_distribution(name: str, body: DistributionUpdate, runtime: RuntimeDep, _: Writer):
    changes = body.model_dump(exclude_unset=True)
    with runtime.db.write() as session:
        distribution = service.get_distribution(session, name)
        service.update_distribution(
            session, distribution, name=changes.get("name"),
            base_path=changes.get("base_path"), hidden=changes.get("hidden"),
            target=_new_target(session, distribution, changes))
        return reads(session, [distribution])[0]


def _new_target(session: Session, distribution: Distribution, changes: dict[str, Any]
                ) -> service.Target | None:
    """The target after a PATCH: None when it names no target field."""
    given = {k: changes[k] for k in TARGET_FIELDS if k in changes}
    if not given:
        return None
    if any(value is not None for value in given.values()):
        return resolve_target(session, **given)
    cleared = {"publication": distribution.publication_id,
               "repository": distribution.repository_id,
               "repository_version": distribution.repository_version_id}
    if any(cleared[kind] is not None for kind in given):
        return service.NOTHING
    return None


@router.delete("/{name}", status_code=204)
def delete_distribution(name: str, runtime: RuntimeDep, _: Writer) -> None:
    with runtime.db.write() as session:
        service.delete_distribution(session, service.get_distribution(session, name))
