"""Routes of the air-gap transfer: signing keys (admin), exporters and exports (the export
permission), importers and imports (the import permission)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib

import anyio
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from pallet.api.deps import Admin, Exporting, Importing, RuntimeDep, dispatch
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.errors import PalletError
from pallet.orphans.service import LOCK as ORPHANS_LOCK
from pallet.publications.service import get_publication
from pallet.tasks import cancel
from pallet.tasks.schemas import TaskRead, task_read
from pallet.tasks.service import get_task
from pallet.transfer import service, tasks
from pallet.transfer.models import Export, Exporter, Importer, SigningKey
from pallet.transfer.streaming import stream_archive
from pallet.uploads.service import lock_name as upload_lock, own_upload
from pallet.transfer.schemas import (ExporterCreate, ExporterRead, ExporterUpdate, ExportRead,
                                     ExportRequest, ImporterCreate, ImporterRead,
                                     ImporterUpdate, ImportRead, ImportRequest,
                                     SigningKeyCreate, SigningKeyRead, TreeRequest,
                                     export_read,
                                     exporter_read, import_read, importer_read, key_read)

router = APIRouter(tags=["transfer"])
ACCEPTED = {202: {"model": TaskRead, "description": "Queued as a task."}}


# -- signing keys ---------------------------------------------------------------------------

@router.post("/signing-keys", status_code=201, response_model=SigningKeyRead)
def create_key(body: SigningKeyCreate, runtime: RuntimeDep, _: Admin):
    with runtime.db.write() as session:
        return key_read(service.create_key(session, name=body.name))


@router.get("/signing-keys", response_model=Page[SigningKeyRead])
def list_keys(request: Request, runtime: RuntimeDep, _: Admin, paging: Paging):
    with runtime.db.read() as session:
        count, items = service.list_keys(session, limit=paging.limit, offset=paging.offset)
        return page(request, paging, count, items, key_read)


@router.get("/signing-keys/{name}", response_model=SigningKeyRead)
def show_key(name: str, runtime: RuntimeDep, _: Admin):
    with runtime.db.read() as session:
        return key_read(service.get_key(session, name))


@router.delete("/signing-keys/{name}", status_code=204)
def delete_key(name: str, runtime: RuntimeDep, _: Admin) -> None:
    with runtime.db.write() as session:
        service.delete_key(session, service.get_key(session, name))


# -- exporters ------------------------------------------------------------------------------

def _exporter_read(session, exporter: Exporter) -> ExporterRead:
    key = session.get(SigningKey, exporter.signing_key_id) if exporter.signing_key_id else None
    last = service.last_export(session, exporter)
    return exporter_read(exporter, service.repository_names(session, exporter.repository_ids),
                         key.name if key else None, last.id if last else None)


@router.post("/exporters", status_code=201, response_model=ExporterRead)
def create_exporter(body: ExporterCreate, runtime: RuntimeDep, _: Exporting):
    with runtime.db.write() as session:
        exporter = service.create_exporter(session, runtime.settings, **body.model_dump())
        return _exporter_read(session, exporter)


@router.get("/exporters", response_model=Page[ExporterRead])
def list_exporters(request: Request, runtime: RuntimeDep, _: Exporting, paging: Paging):
    with runtime.db.read() as session:
        count, items = service.list_exporters(session, limit=paging.limit, offset=paging.offset)
        return page(request, paging, count, items, lambda e: _exporter_read(session, e))


@router.get("/exporters/{name}", response_model=ExporterRead)
def show_exporter(name: str, runtime: RuntimeDep, _: Exporting):
    with runtime.db.read() as session:
        return _exporter_read(session, service.get_exporter(session, name))


@router.patch("/exporters/{name}", response_model=ExporterRead)
def update_exporter(name: str, body: ExporterUpdate, runtime: RuntimeDep, _: Exporting):
    with runtime.db.write() as session:
        exporter = service.get_exporter(session, name)
        service.update_exporter(session, runtime.settings, exporter,
                                body.model_dump(exclude_unset=True))
        return _exporter_read(session, exporter)


@router.delete("/exporters/{name}", status_code=204)
def delete_exporter(name: str, runtime: RuntimeDep, _: Exporting) -> None:
    with runtime.db.write() as session:
        service.delete_exporter(session, service.get_exporter(session, name))


@router.post("/exporters/{name}/export", status_code=202, response_model=TaskRead,
             responses=ACCEPTED)
def run_export(name: str, body: ExportRequest, runtime: RuntimeDep, principal: Exporting):
    """Write an export into the exporter's directory: chunk files and a table of contents."""
    with runtime.db.read() as session:
        exporter = service.get_exporter(session, name)
        service.check_export_dir(runtime.settings, exporter.path)
        repositories = [f"repository:{i}" for i in exporter.repository_ids]
    return dispatch(runtime, principal, tasks.export, exclusive=[f"exporter:{exporter.id}"],
                    shared=repositories, exporter_id=exporter.id, **body.model_dump())


@router.get("/exporters/{name}/stream", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-tar": {}},
                             "description": "The archive as one stream, its table of "
                                            "contents last."}})
def stream_export(name: str, runtime: RuntimeDep, _: Exporting, incremental: bool = False,
                  fetch: bool = True):
    """Export as a single stream, straight to the client (nothing is written on the server);
    recorded like any export once the last byte is out. With `fetch`, the files of on-demand
    units are fetched from their remotes before the first byte."""
    with runtime.db.read() as session:
        exporter_id = service.get_exporter(session, name).id

    def choose(session):
        return tasks.selections(session, session.get(Exporter, exporter_id),
                                incremental=incremental, versions={}, start_versions={})

    def prepare(session):
        return tasks.prepare_export(session, session.get(Exporter, exporter_id),
                                    incremental=incremental, versions={}, start_versions={})

    def record(session, prepared, chunks, seconds):
        tasks.record_export(session, exporter_id, prepared.chosen, prepared.document,
                            chunks, prepared.key, seconds)

    return stream_archive(runtime, prepare, record=record, fetch=choose if fetch else None,
                          filename=f"{name}.tar")


@router.post("/publications/{publication_id}/tree", status_code=202, response_model=TaskRead,
             responses=ACCEPTED)
def export_tree(publication_id: int, body: TreeRequest, runtime: RuntimeDep,
                principal: Exporting):
    """Write a publication as a plain directory tree (copy, hard link or symlink) that any
    client, or a Pallet with a `file://` remote, can read."""
    with runtime.db.read() as session:
        publication = get_publication(session, publication_id)
    target = str(service.check_export_dir(runtime.settings, body.path))
    # One writer per target directory at a time.
    tree_lock = f"tree:{hashlib.sha256(target.encode()).hexdigest()[:32]}"
    return dispatch(runtime, principal, tasks.export_tree,
                    shared=[f"repository:{publication.repository_id}"], exclusive=[tree_lock],
                    publication_id=publication_id, **body.model_dump())


# -- exports --------------------------------------------------------------------------------

def _export_read(session, export: Export) -> ExportRead:
    exporter = session.get(Exporter, export.exporter_id) if export.exporter_id else None
    return export_read(export, exporter.name if exporter else None)


@router.get("/exports", response_model=Page[ExportRead])
def list_exports(request: Request, runtime: RuntimeDep, _: Exporting, paging: Paging,
                 exporter: str | None = None):
    with runtime.db.read() as session:
        owner = service.get_exporter(session, exporter) if exporter else None
        count, items = service.list_exports(session, exporter=owner, limit=paging.limit,
                                            offset=paging.offset)
        return page(request, paging, count, items, lambda e: _export_read(session, e))


@router.get("/exports/{export_id}", response_model=ExportRead)
def show_export(export_id: int, runtime: RuntimeDep, _: Exporting):
    with runtime.db.read() as session:
        return _export_read(session, service.get_export(session, export_id))


@router.delete("/exports/{export_id}", status_code=204)
def delete_export(export_id: int, runtime: RuntimeDep, _: Exporting) -> None:
    """Forget an export and delete its files (an incremental then starts from the one
    before it)."""
    with runtime.db.write() as session:
        files = service.delete_export(session, service.get_export(session, export_id))
    for path in files:
        path.unlink(missing_ok=True)


# -- importers and imports ------------------------------------------------------------------

@router.post("/importers", status_code=201, response_model=ImporterRead)
def create_importer(body: ImporterCreate, runtime: RuntimeDep, _: Importing):
    with runtime.db.write() as session:
        return importer_read(service.create_importer(session, **body.model_dump()))


@router.get("/importers", response_model=Page[ImporterRead])
def list_importers(request: Request, runtime: RuntimeDep, _: Importing, paging: Paging):
    with runtime.db.read() as session:
        count, items = service.list_importers(session, limit=paging.limit, offset=paging.offset)
        return page(request, paging, count, items, importer_read)


@router.get("/importers/{name}", response_model=ImporterRead)
def show_importer(name: str, runtime: RuntimeDep, _: Importing):
    with runtime.db.read() as session:
        return importer_read(service.get_importer(session, name))


@router.patch("/importers/{name}", response_model=ImporterRead)
def update_importer(name: str, body: ImporterUpdate, runtime: RuntimeDep, _: Importing):
    with runtime.db.write() as session:
        importer = service.get_importer(session, name)
        return importer_read(service.update_importer(session, importer,
                                                     body.model_dump(exclude_unset=True)))


@router.delete("/importers/{name}", status_code=204)
def delete_importer(name: str, runtime: RuntimeDep, _: Importing) -> None:
    with runtime.db.write() as session:
        service.delete_importer(session, service.get_importer(session, name))


def _importer(runtime, name: str, body: ImportRequest | None = None,
              principal=None) -> Importer:
    with runtime.db.read() as session:
        if body is not None and body.upload is not None:
            own_upload(session, body.upload, principal)  # the task consumes it: the caller's
        return service.get_importer(session, name)


def _upload_locks(body: ImportRequest) -> list[str]:
    # The upload is the archive: never committed or deleted by anyone else while the task
    # reads it; the task removes it when it ends.
    return [upload_lock(body.upload)] if body.upload is not None else []


@router.post("/importers/{name}/check", status_code=202, response_model=TaskRead,
             responses=ACCEPTED)
def check_import(name: str, body: ImportRequest, runtime: RuntimeDep, principal: Importing):
    """Validate an archive against this server, change nothing, and report the plan (the
    task's result). An upload named is removed when the check ends."""
    importer = _importer(runtime, name, body, principal)
    tasks.destinations(runtime, importer, path=body.path, upload_id=body.upload)
    return dispatch(runtime, principal, tasks.check, exclusive=_upload_locks(body),
                    importer_id=importer.id, path=body.path, upload_id=body.upload)


@router.post("/importers/{name}/import", status_code=202, response_model=TaskRead,
             responses=ACCEPTED)
def run_import(name: str, body: ImportRequest, runtime: RuntimeDep, principal: Importing):
    """Import an archive: every destination changes, or none does. An upload named is
    removed when the import ends, either way."""
    importer = _importer(runtime, name, body, principal)
    names = tasks.destinations(runtime, importer, path=body.path, upload_id=body.upload)
    own = _upload_locks(body)
    return dispatch(runtime, principal, tasks.import_archive,
                    exclusive=[f"importer:{importer.id}", *own,
                               *tasks.import_locks(runtime, names)],
                    shared=[ORPHANS_LOCK], importer_id=importer.id, path=body.path,
                    upload_id=body.upload, destinations=names)


class Busy(PalletError):
    status, code = 503, "busy"


class Stalled(PalletError):
    status, code = 408, "stalled"


class _StreamSlots:
    """The streamed imports a process runs at once, on threads of their own: stalled or slow
    bodies never hold the thread pool every other route needs (40 of them stopped the API).
    Taken and given back on the event loop's thread only, so a plain count is enough."""

    def __init__(self, size: int) -> None:
        self.size, self.free = size, size
        self.threads = anyio.CapacityLimiter(size)

    @classmethod
    def of(cls, request: Request, runtime) -> "_StreamSlots":
        state = request.app.state
        if getattr(state, "import_streams", None) is None:
            state.import_streams = cls(runtime.settings.import_streams)
        return state.import_streams


@router.post("/importers/{name}/import-stream", response_model=TaskRead,
             openapi_extra={"requestBody": {"content": {"application/x-tar": {}}}})
async def import_stream(name: str, request: Request, runtime: RuntimeDep,
                        principal: Importing):
    """Import the archive sent as the request body (a single stream, as `GET
    /exporters/{name}/stream` sends it), read as it arrives and never stored whole. Runs as a
    task bound to this request; answers the finished task. At most `import_streams` run at
    once (503 beyond), and one whose body stalls for `import_stream_idle_seconds` fails."""
    slots = _StreamSlots.of(request, runtime)
    if not slots.free:
        raise Busy(f"{slots.size} streamed imports are running already (import_streams); "
                   "try again later")
    slots.free -= 1
    try:
        importer = await run_in_threadpool(_importer, runtime, name)
        body = _RequestBody(request, asyncio.get_running_loop(),
                            runtime.settings.import_stream_idle_seconds)
        pump = asyncio.create_task(body.pump())
        try:
            task_id = await anyio.to_thread.run_sync(
                functools.partial(tasks.import_stream, runtime, importer, body,
                                  created_by=principal.username), limiter=slots.threads)
        finally:
            pump.cancel()
    finally:
        slots.free += 1

    def read() -> TaskRead:
        with runtime.db.read() as session:
            return task_read(get_task(session, task_id))
    return await run_in_threadpool(read)


class _RequestBody:
    """A request's body as a blocking stream for a worker thread: the event loop fills a
    small queue, the thread drains it."""

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop,
                 idle_seconds: float) -> None:
        self.request, self.loop, self.idle_seconds = request, loop, idle_seconds
        self.blocks: asyncio.Queue = asyncio.Queue(maxsize=16)
        self._pending = b""
        self._ended = self._closed = False

    async def pump(self) -> None:
        try:
            async for block in self.request.stream():
                if block:
                    await self.blocks.put(block)
        finally:  # the body ended, or the client went away: the reader sees the end
            self._closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self.blocks.put_nowait(b"")

    def read(self, n: int = -1) -> bytes:
        waited = 0.0
        while not self._pending and not self._ended:
            future = asyncio.run_coroutine_threadsafe(self.blocks.get(), self.loop)
            step = min(1.0, self.idle_seconds)
            try:
                block = future.result(timeout=step)
            except TimeoutError:
                future.cancel()
                cancel.check()  # a sender that stalls must not keep a cancel waiting
                waited += step
                if self._closed:
                    block = b""  # an archive cut short: the reader says it is truncated
                elif waited >= self.idle_seconds:
                    raise Stalled(f"the request body sent nothing for {waited:g} seconds "
                                  "(import_stream_idle_seconds): the import stopped, "
                                  "changing nothing") from None
                else:
                    continue
            self._ended = not block
            self._pending = block
        if n < 0:
            n = len(self._pending)
        data, self._pending = self._pending[:n], self._pending[n:]
        return data


def _import_read(session, record) -> ImportRead:
    importer = session.get(Importer, record.importer_id) if record.importer_id else None
    return import_read(record, importer.name if importer else None)


@router.get("/imports", response_model=Page[ImportRead])
def list_imports(request: Request, runtime: RuntimeDep, _: Importing, paging: Paging,
                 importer: str | None = None):
    with runtime.db.read() as session:
        owner = service.get_importer(session, importer) if importer else None
        count, items = service.list_imports(session, importer=owner, limit=paging.limit,
                                            offset=paging.offset)
        return page(request, paging, count, items, lambda r: _import_read(session, r))


@router.get("/imports/{import_id}", response_model=ImportRead)
def show_import(import_id: int, runtime: RuntimeDep, _: Importing):
    with runtime.db.read() as session:
        return _import_read(session, service.get_import(session, import_id))

