from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from pallet.api.deps import Reader, RuntimeDep, Writer
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.content import service
from pallet.content.references import stored_references
from pallet.content.schemas import ContentRead, ReferenceRead, content_read
from pallet.repositories.service import get_repository

router = APIRouter(prefix="/content", tags=["content"])


@router.get("", response_model=Page[ContentRead])
def list_content(request: Request, runtime: RuntimeDep, _: Reader, paging: Paging,
                 type: str | None = None, repository: str | None = None,
                 version: int | None = None, relative_path: str | None = None,
                 path_prefix: str | None = None, digest: str | None = None):
    """Content, filtered by type, by repository (newest or a given version) and by path."""
    with runtime.db.read() as session:
        repo = get_repository(session, repository) if repository else None
        count, items = service.list_content(
            session, type=type, repository=repo, version=version, relative_path=relative_path,
            path_prefix=path_prefix, digest=digest, limit=paging.limit, offset=paging.offset)
        return page(request, paging, count, items, content_read)


@router.get("/{content_id}", response_model=ContentRead)
def show_content(content_id: int, runtime: RuntimeDep, _: Reader):
    with runtime.db.read() as session:
        return content_read(service.get_content(session, content_id))


@router.get("/{content_id}/references", response_model=list[ReferenceRead])
def show_references(content_id: int, runtime: RuntimeDep, _: Reader):
    """The units this unit names (an advisory its packages, a group its package names), as
    its type declared them when it was recorded."""
    with runtime.db.read() as session:
        service.get_content(session, content_id)
        return stored_references(session, content_id)


@router.post("/{type}", response_model=ContentRead, status_code=201,
             responses={200: {"model": ContentRead, "description": "The unit existed already."}})
def create_content(type: str, runtime: RuntimeDep, _: Writer,
                   fields: dict[str, Any] = Body(examples=[{"relative_path": "a/b.txt",
                                                            "sha256": "0" * 64}])):
    """A unit of `type` from artifacts already stored (the type says which fields it has)."""
    with runtime.db.write() as session:
        content, created = service.create_content(session, runtime.plugins, type=type,
                                                  fields=fields)
        body = content_read(content)
    return JSONResponse(status_code=201 if created else 200, content=body.model_dump(mode="json"))
