from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from pallet.api.deps import Reader, RuntimeDep, Writer, authenticate, dispatch
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.auth.permissions import IMPORT, WRITE
from pallet.auth.service import Principal
from pallet.content.service import validate_unit
from pallet.errors import Forbidden, Invalid
from pallet.orphans.service import LOCK as ORPHANS_LOCK
from pallet.repositories.service import get_repository, lock_name as repository_lock
from pallet.tasks.schemas import TaskRead
from pallet.uploads import service, tasks
from pallet.uploads.models import Upload
from pallet.uploads.schemas import UploadCommit, UploadCreate, UploadRead

router = APIRouter(prefix="/uploads", tags=["uploads"])


def _uploader(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """Writers upload files; importers upload archives for their imports (`--file`), which
    only writers can commit as artifacts."""
    if not principal.permissions & {WRITE, IMPORT}:
        raise Forbidden(f"user {principal.username!r} may not upload (needs the 'write' or "
                        "the 'import' permission)", details={"needs": [WRITE, IMPORT]})
    return principal


Uploader = Annotated[Principal, Depends(_uploader)]


def _read(session, upload: Upload) -> UploadRead:
    ranges = service.received_ranges(session, upload)
    received = service.received_bytes(ranges)
    return UploadRead(id=upload.id, href=f"/api/v1/uploads/{upload.id}", size=upload.size,
                      received=ranges, received_bytes=received,
                      complete=received == upload.size, created_by=upload.created_by,
                      created_at=upload.created_at)


@router.post("", status_code=201, response_model=UploadRead)
def create_upload(body: UploadCreate, runtime: RuntimeDep, principal: Uploader):
    with runtime.db.write() as session:
        upload = service.create_upload(session, runtime.settings, size=body.size,
                                       created_by=principal.username)
        return _read(session, upload)


@router.get("", response_model=Page[UploadRead])
def list_uploads(request: Request, runtime: RuntimeDep, _: Reader, paging: Paging):
    with runtime.db.read() as session:
        count, items = service.list_uploads(session, limit=paging.limit, offset=paging.offset)
        return page(request, paging, count, items, lambda u: _read(session, u))


@router.get("/{upload_id}", response_model=UploadRead)
def show_upload(upload_id: int, runtime: RuntimeDep, _: Reader):
    with runtime.db.read() as session:
        return _read(session, service.get_upload(session, upload_id))


@router.put("/{upload_id}", response_model=UploadRead,
            openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}})
async def put_chunk(upload_id: int, request: Request, runtime: RuntimeDep,
                    principal: Uploader):
    """One chunk, placed by its `Content-Range: bytes START-END/TOTAL` header. Chunks may
    arrive in any order and in parallel; sending a range again overwrites it."""
    def check() -> tuple[Upload, int, int]:
        with runtime.db.read() as session:
            upload = service.own_upload(session, upload_id, principal)
            offset, length = service.parse_content_range(
                request.headers.get("content-range"), upload, runtime.settings)
            return upload, offset, length

    upload, offset, length = await run_in_threadpool(check)
    blocks, received = [], 0
    async for block in request.stream():  # bounded by the chunk-size limit checked above
        received += len(block)
        if received > length:
            raise Invalid(f"the chunk body is longer than its range ({length} bytes)")
        blocks.append(block)
    if received != length:  # checked before anything is written
        raise Invalid(f"the chunk body has {received} bytes, its range says {length}")

    def store() -> UploadRead:
        service.write_chunk(runtime.settings, upload, offset, length, blocks)
        with runtime.db.write() as session:
            service.record_chunk(session, service.get_upload(session, upload_id), offset, length)
            return _read(session, service.get_upload(session, upload_id))

    return await run_in_threadpool(store)


@router.post("/{upload_id}/commit", status_code=202, response_model=TaskRead)
def commit_upload(upload_id: int, body: UploadCommit, runtime: RuntimeDep, principal: Writer):
    """Finish the upload: a task checks every byte arrived and matches `sha256`, then the
    file becomes an artifact; with `relative_path`, a `file` unit, or with `type`, a unit of
    that type read from the file; with `repository`, a new version holding it. One task does
    it all, so it ends the same whoever waits for it."""
    sha256 = body.sha256.lower()
    locks = [service.lock_name(upload_id)]
    unit_type = _unit_type(runtime, body, sha256)  # refused now rather than after the hashing
    with runtime.db.read() as session:
        service.get_upload(session, upload_id)
        repository = None
        if body.repository is not None:
            if unit_type is None:
                raise Invalid("a repository takes a content unit: give its relative_path "
                              "(or its type) too", details={"field": "relative_path"})
            repository = get_repository(session, body.repository)
            if unit_type not in runtime.plugins.repository_type(repository.type).content_types:
                raise Invalid(f"repository {repository.name!r} ({repository.type}) holds no "
                              f"{unit_type} content", details={"repository": repository.name})
            locks.append(repository_lock(repository))
    # Shared on orphans: cleanup must not delete the new artifact, or its file, before the
    # commit has recorded it (nor the unit before it is in the version).
    return dispatch(runtime, principal, tasks.commit_upload, exclusive=locks,
                    shared=[ORPHANS_LOCK], upload_id=upload_id, sha256=sha256,
                    relative_path=body.relative_path, unit_type=body.type,
                    repository_id=repository.id if repository else None)


def _unit_type(runtime, body: UploadCommit, sha256: str) -> str | None:
    """The type of the unit the commit makes (None: only an artifact), its request checked."""
    if body.relative_path is not None and body.type is not None:
        raise Invalid("give relative_path (a file unit) or type (a unit read from the file), "
                      "not both", details={"field": "type"})
    if body.relative_path is not None:
        validate_unit(runtime.plugins, "file",
                      {"relative_path": body.relative_path, "sha256": sha256})
        return "file"
    if body.type is not None:
        if runtime.plugins.content_type(body.type).from_file is None:
            raise Invalid(f"{body.type} units are not read from their file: give the "
                          "unit's fields instead", details={"field": "type"})
    return body.type


@router.delete("/{upload_id}", status_code=204)
def delete_upload(upload_id: int, runtime: RuntimeDep, principal: Uploader) -> None:
    with runtime.db.write() as session:
        service.delete_upload(session, service.own_upload(session, upload_id, principal))
    service.upload_path(runtime.settings, upload_id).unlink(missing_ok=True)
