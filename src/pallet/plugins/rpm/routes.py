"""The rpm type's own API routes, under /api/v1/rpm/: packages of a repository version found
by name and arch (an index look-up, `content/fields.py`), in a compact form (NEVRA, location,
summary) instead of every field of a package."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import func, select

from pallet.api.deps import Reader, RuntimeDep
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.content.fields import fields_match
from pallet.content.models import Content
from pallet.errors import Invalid
from pallet.plugins.rpm.nevra import nevra_text
from pallet.plugins.rpm.package import TYPE, location
from pallet.repositories.models import RepositoryContent as RC
from pallet.repositories.service import get_repository
from pallet.repositories.versions import get_version, latest_version, present_at


class PackageRead(BaseModel):
    id: int
    href: str
    nevra: str
    name: str
    epoch: str
    version: str
    release: str
    arch: str
    location: str
    pkgid: str
    summary: str


def routes() -> APIRouter:
    router = APIRouter()

    @router.get("/repositories/{name}/packages", response_model=Page[PackageRead])
    def list_packages(name: str, request: Request, runtime: RuntimeDep, _: Reader,
                      paging: Paging, package: str | None = None, arch: str | None = None,
                      version: int | None = None):
        """The packages of a repository version (default the newest), optionally of one
        name (`package`) and arch, in the order they were first recorded."""
        with runtime.db.read() as session:
            repository = get_repository(session, name)
            if repository.type != "rpm":
                raise Invalid(f"repository {name!r} is a {repository.type} repository, not an "
                              "rpm one", details={"repository": name})
            number = (latest_version(session, repository).number if version is None
                      else get_version(session, repository, version).number)
            fields = {key: value for key, value in (("name", package), ("arch", arch))
                      if value}  # an empty parameter is no filter
            members = select(RC.content_id).where(RC.repository_id == repository.id,
                                                  present_at(RC, number))
            query = (select(Content.id, Content.data)
                     .where(fields_match(TYPE, fields), Content.id.in_(members)))
            count = session.scalar(select(func.count()).select_from(query.subquery()))
            rows = session.execute(query.order_by(Content.id)
                                   .limit(paging.limit).offset(paging.offset)).all()
            return page(request, paging, count, rows, _package_read)

    return router


def _package_read(row) -> PackageRead:
    content_id, data = row
    nevra = {k: data[k] for k in ("name", "epoch", "version", "release", "arch")}
    return PackageRead(id=content_id, href=f"/api/v1/content/{content_id}",
                       nevra=nevra_text(**nevra), summary=data.get("summary", ""),
                       location=location(nevra["name"], nevra["version"], nevra["release"],
                                         nevra["arch"]),
                       **{k: data[k] for k in ("name", "epoch", "version", "release", "arch",
                                               "pkgid")})
