"""Syncing a repository from a remote, as named stages passing explicit values:

1. **plan** (remotes/plan.py, in a worker thread): the repository type reads the remote
   through a `RemoteFiles` (remotes/reader.py), as many metadata files as its format needs;
   its units are validated (those announced by their key and held already are not built
   again) and taken in batches of BATCH (memory stays bounded: only the content ids of all
   units are kept, as integers), and for each batch the artifacts recorded and the bytes
   stored already are found, and the files to download listed;
2. **download** (the immediate policy's files): N workers drain a bounded queue of the
   batches' files through the sync's one `Downloader`; a file is fetched once per sync;
3. **record** (remotes/record.py, in a worker thread): once a batch's files are in, its rows
   in one short transaction, batches one at a time: artifacts, new content with its content
   artifacts, links for existing ones, and where each file can be fetched from this remote;
4. **version**: the new version (or none if nothing changed) and its auto-publication in one
   final transaction.

The stages run in one task group: the first failure (a file that cannot be fetched, an
invalid index, a cancel) cancels the rest and becomes the task's error. At most
PENDING_BATCHES batches are planned ahead of the one being recorded.

Content recorded in stage 3 is in no version until stage 4: invisible, and kept from orphan
cleanup by the shared "orphans" lock every sync holds. A failure or cancel before stage 4's
commit leaves the repository as it was; files already verified stay stored for the next try.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from array import array
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urlsplit

from sqlalchemy import delete
from sqlalchemy.orm import Session

from pallet.errors import Canceled, Invalid, NotFound, PalletError
from pallet.plugin import RepositoryType, SyncOptions
from pallet.plugins import Registry
from pallet.publications.service import autopublish
from pallet.remotes.downloader import Downloader, DownloadError, RemoteConfig, temporary_dir
from pallet.remotes.models import IMMEDIATE, Remote, SyncFingerprint
from pallet.remotes.plan import Batch, Deferred, SyncUnit, Validator, completed, held_units, \
    plan_batch, read_units
from pallet.remotes.reader import RemoteFiles, Unchanged
from pallet.remotes.record import record_batch
from pallet.remotes.service import check_url, fingerprint_options, get_remote, sync_options
from pallet.repositories.models import Repository
from pallet.repositories.tasks import version_result
from pallet.repositories.versions import create_version, latest_version
from pallet.runtime import Runtime
from pallet.settings import Settings

# Batches alive at once (planned, downloading, being recorded): with downloads, the next
# ones' files keep the workers busy while a batch waits for its last file; without, one
# batch planned while one is recorded is all there is to overlap.
PENDING_BATCHES = 3
PENDING_BATCHES_WITHOUT_DOWNLOADS = 2
REPORTED_FAILURES = 10
TICK_SECONDS = 0.25


# -- before the task ------------------------------------------------------------------------

def sync_remote(session: Session, repository: Repository, name: str | None) -> Remote:
    """The remote a sync uses: the one named, else the repository's own."""
    if name is not None:
        return get_remote(session, name)
    remote = session.get(Remote, repository.remote_id) if repository.remote_id else None
    if remote is None:
        raise Invalid(f"repository {repository.name!r} has no remote: name one, or set the "
                      "repository's remote", details={"field": "remote"})
    return remote


def check_sync(plugins: Registry, settings: Settings, repository: Repository,
               remote: Remote) -> RepositoryType:
    """The repository's type, if it can sync from `remote` now."""
    if remote.type != repository.type:
        raise Invalid(f"remote {remote.name!r} is a {remote.type} remote; repository "
                      f"{repository.name!r} is a {repository.type} repository",
                      details={"remote": remote.name, "repository": repository.name})
    repository_type = plugins.repository_type(repository.type)
    if repository_type.read_remote is None:
        raise Invalid(f"{repository.type} repositories cannot sync from a remote")
    check_url(remote.url, settings.allowed_import_dirs)  # again: links may have changed
    sync_options(repository_type, remote.options)  # again: the type's model may have changed
    return repository_type


# -- the task -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """What a sync reads and how, taken from the rows in a read session (no session is
    held across network I/O)."""

    config: RemoteConfig
    remote_id: int
    policy: str
    mirror: bool
    repository_type: RepositoryType
    options: SyncOptions
    unchanged: Callable[[str], bool]  # whether a fingerprint file's sha256 means: stop

    @property
    def immediate(self) -> bool:
        return self.policy == IMMEDIATE

    @property
    def schemes(self) -> tuple[str, ...]:
        """The URL schemes the remote's files may have: its own kind of place."""
        local = urlsplit(self.config.url).scheme.lower() == "file"
        return ("file",) if local else ("http", "https")


@dataclass
class Progress:
    """A sync's counters; the stages add to them, `report` tells the task."""

    units: int = 0
    written: int = 0
    reused: int = 0
    files_done: int = 0
    files_planned: int = 0
    bytes_done: int = 0
    bytes_planned: int = 0
    index_read: bool = False

    def counts(self) -> dict[str, int]:
        return {"units": self.units, "downloaded": self.files_done, "bytes": self.bytes_done,
                "reused": self.reused}

    def report(self, task, immediate: bool) -> None:
        """Raises Canceled when someone asked the task to stop."""
        total = self.units if self.index_read else None
        task.progress("reading index", self.units, total)
        if immediate:
            task.progress("downloading", self.files_done,
                          self.files_planned if self.index_read else None)
            task.progress("downloading bytes", self.bytes_done, self.bytes_planned)
        task.progress("saving content", self.written, total)


@dataclass(frozen=True)
class Fetched:
    """What stages 1-3 leave for the version: the units' content ids, and the sha256 of
    the fingerprint file the type read (None if it reads none)."""

    content_ids: array
    fingerprint: str | None


def sync_repository(runtime: Runtime, task, *, repository_id: int, remote_id: int,
                    mirror: bool | None = None) -> None:
    source = _source(runtime, repository_id, remote_id, mirror)
    progress = Progress()
    try:
        fetched = asyncio.run(fetch(runtime, task, source, progress))
    except Unchanged:  # the remote's fingerprint file is the one the last sync read
        task.result = {"version": None, "unchanged": True, "mirror": source.mirror,
                       **progress.counts()}
        return
    _return_freed_memory()
    result = _make_version(runtime, task, repository_id, source, fetched)
    task.result = {**result, "mirror": source.mirror, **progress.counts()}


def _return_freed_memory() -> None:
    """Give the memory the batches freed back to the system before the version is made,
    which needs its own (the repository keys of what enters): glibc keeps freed blocks of
    the batches' JSON text mapped otherwise, and the version's needs come on top. Measured
    on the on-demand sync of 50,000 packages: peak RSS 212 MB -> 191 MB. A no-op where the
    C library has no malloc_trim."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def _source(runtime: Runtime, repository_id: int, remote_id: int,
            mirror: bool | None) -> Source:
    with runtime.db.read() as session:
        repository = _row(session, Repository, repository_id, "repository")
        remote = _row(session, Remote, remote_id, "remote")
        repository_type = check_sync(runtime.plugins, runtime.settings, repository, remote)
        options = sync_options(repository_type, remote.options)
        mirror = remote.mirror if mirror is None else mirror
        return Source(RemoteConfig.from_remote(remote), remote.id, remote.policy, mirror,
                      repository_type, options,
                      _unchanged_check(session, repository, remote, mirror, options))


def _make_version(runtime: Runtime, task, repository_id: int, source: Source,
                  fetched: Fetched) -> dict:
    with runtime.db.write() as session:
        repository = _row(session, Repository, repository_id, "repository")
        task.progress("creating version", 0, 1)
        version = create_version(session, runtime.plugins, repository,
                                 add=fetched.content_ids, remove_all=source.mirror,
                                 progress=task.progress)
        publication = autopublish(session, runtime.plugins, runtime.storage, repository,
                                  version)
        task.progress("creating version", 1, 1)
        task.check_canceled()  # the last chance to stop before the version becomes visible
        result = version_result(task, repository, version, publication)
        _remember_fingerprint(session, repository, source, fetched.fingerprint)
    return result


def _unchanged_check(session: Session, repository: Repository, remote: Remote, mirror: bool,
                     options: SyncOptions) -> Callable[[str], bool]:
    """Whether a fingerprint file with a given sha256 leaves this sync nothing to do: the
    last sync from this remote read the same, with the same policy, mode and sync options,
    and made the newest version. Never with the immediate policy: its syncs also refetch
    lost bytes."""
    last = session.get(SyncFingerprint, (repository.id, remote.id))
    newest = latest_version(session, repository).number
    if last is None or remote.policy == IMMEDIATE or \
            (last.version, last.policy, last.mirror, last.options) \
            != (newest, remote.policy, mirror, fingerprint_options(options)):
        return lambda sha256: False
    read_last = last.sha256
    return lambda sha256: sha256 == read_last


def _remember_fingerprint(session: Session, repository: Repository, source: Source,
                          fingerprint: str | None) -> None:
    """What this sync read first, for the next one (or nothing, if its type reads none)."""
    session.execute(delete(SyncFingerprint).where(
        SyncFingerprint.repository_id == repository.id,
        SyncFingerprint.remote_id == source.remote_id))
    if fingerprint is None:
        return
    session.add(SyncFingerprint(repository_id=repository.id, remote_id=source.remote_id,
                                sha256=fingerprint,
                                version=latest_version(session, repository).number,
                                policy=source.policy, mirror=source.mirror,
                                options=fingerprint_options(source.options)))


def _row(session: Session, model, row_id: int, what: str):
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"the {what} was deleted before the sync ran",
                       details={f"{what}_id": row_id})
    return row


# -- stages 1-3, on one event loop ------------------------------------------------------------

async def fetch(runtime: Runtime, task, source: Source, progress: Progress) -> Fetched:
    """Plan, download and record every unit of the remote; raises Unchanged when the
    fingerprint file says there is nothing to do."""
    storage, settings = runtime.storage, runtime.settings
    validator = Validator(runtime.plugins, source.repository_type, schemes=source.schemes,
                          immediate=source.immediate)
    async with Downloader(source.config, settings, storage) as downloader:
        task.progress("downloading index", 0, None)
        remote = RemoteFiles(
            source.config.url, downloader, asyncio.get_running_loop(),
            schemes=source.schemes, limit=settings.max_index_size,
            tmp_dir=temporary_dir(storage),
            progress=lambda done, total: task.progress("downloading index", done, total),
            unchanged=source.unchanged, options=source.options)
        try:
            units = read_units(validator, source.repository_type.read_remote(remote), remote,
                               held=lambda keyed: held_units(runtime, source.remote_id, keyed))
            content_ids = await _stages(runtime, task, source, validator, downloader, units,
                                        progress)
            return Fetched(content_ids, remote.fingerprint)
        finally:
            remote.close()


async def _stages(runtime: Runtime, task, source: Source, validator: Validator,
                  downloader: Downloader, units: Iterator[SyncUnit | Deferred],
                  progress: Progress) -> array:
    workers = source.config.download_concurrency if source.immediate else 0
    downloads: asyncio.Queue = asyncio.Queue(maxsize=2 * max(workers, 1))
    done = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_report(task, source.immediate, progress, done))
            for _ in range(workers):
                group.create_task(_download(downloader, downloads, progress))
            batches = _Batches(runtime, source.remote_id, validator, group, downloads,
                               progress,
                               pending=PENDING_BATCHES if workers
                               else PENDING_BATCHES_WITHOUT_DOWNLOADS)
            content_ids = await batches.run(units, immediate=source.immediate)
            for _ in range(workers):
                await downloads.put(None)
            done.set()
    except BaseExceptionGroup as errors:
        raise _error(errors) from None
    return content_ids


class _Batches:
    """Stage 1 feeding stages 2 and 3: each planned batch's files go on the download queue
    (in batch order), and the batch is recorded once they are in. `fetching` shares a file
    between batches that both need it, by sha256 (by URL for a file of unknown sha256,
    which no sha256 is); each future gives the download's (sha256, size)."""

    def __init__(self, runtime: Runtime, remote_id: int, validator: Validator,
                 group: asyncio.TaskGroup, downloads: asyncio.Queue, progress: Progress, *,
                 pending: int) -> None:
        self.runtime, self.remote_id, self.validator = runtime, remote_id, validator
        self.group, self.downloads, self.progress = group, downloads, progress
        self.ahead = asyncio.Semaphore(pending)
        self.writing = asyncio.Lock()
        self.fetching: dict[str, asyncio.Future] = {}

    async def run(self, units: Iterator[SyncUnit | Deferred], *, immediate: bool) -> array:
        recording = []
        # The next batch is planned while this one's files are queued: planning it only
        # once the queue ran dry would leave the workers idle meanwhile.
        planned = self.group.create_task(self._plan(units, immediate))
        while (batch := await planned) is not None:
            planned = self.group.create_task(self._plan(units, immediate))
            self.progress.units += batch.size
            self.progress.reused += len(batch.stored)
            files = await self._queue(batch)
            recording.append(self.group.create_task(self._record(batch, files)))
        self.progress.index_read = True
        content_ids = array("q")
        for recorded in recording:
            content_ids.extend(await recorded)
        return content_ids

    async def _plan(self, units: Iterator[SyncUnit | Deferred], immediate: bool
                    ) -> Batch | None:
        await self.ahead.acquire()
        batch = await asyncio.to_thread(plan_batch, self.runtime, units, immediate=immediate)
        if batch is None:
            self.ahead.release()
        return batch

    async def _queue(self, batch: Batch) -> dict[str, asyncio.Future]:
        """The downloads the batch waits for, queued unless another batch's are them."""
        wanted = dict(batch.missing)
        wanted.update((file.url, file) for unit in batch.deferred
                      for file in unit.unknown.values())
        files = {}
        for key, file in wanted.items():
            if key not in self.fetching:
                self.fetching[key] = asyncio.get_running_loop().create_future()
                self.progress.files_planned += 1
                self.progress.bytes_planned += file.size or 0
                await self.downloads.put((file, self.fetching[key]))
            files[key] = self.fetching[key]
        return files

    async def _record(self, batch: Batch, files: dict[str, asyncio.Future]) -> array:
        try:
            fetched = {key: await future for key, future in files.items()}
            async with self.writing:
                content_ids = await asyncio.to_thread(_write, self.runtime, self.remote_id,
                                                      self.validator, batch, fetched)
            self.progress.written += batch.size
            return content_ids
        finally:
            for key in files:
                self.fetching.pop(key, None)
            self.ahead.release()


def _write(runtime: Runtime, remote_id: int, validator: Validator, batch: Batch,
           fetched: dict[str, tuple[str, int]]) -> array:
    """Stage 3 for one batch (in a thread), given its downloads' (sha256, size); its
    deferred units are completed first."""
    units = batch.units
    if batch.deferred:
        units = units + completed(validator, batch, fetched)
    stored = {**batch.stored, **dict(fetched.values())}
    return record_batch(runtime, remote_id, units, batch.artifacts, stored)


async def _download(downloader: Downloader, queue: asyncio.Queue, progress: Progress) -> None:
    """Stage 2, one of N workers: files into the store until the queue says stop."""
    while (job := await queue.get()) is not None:
        file, future = job
        try:
            sha256, size = await downloader.download(file)
        except PalletError as exc:
            raise _FileFailed(exc) from None
        except OSError as exc:  # the store's disk, not the remote
            raise _FileFailed(PalletError(
                f"storing {file.url} failed: {exc.strerror or exc}",
                code="storage_failed", details={"url": file.url})) from None
        progress.files_done += 1
        progress.bytes_done += size
        future.set_result((sha256, size))


async def _report(task, immediate: bool, progress: Progress, done: asyncio.Event) -> None:
    """Progress reports until done; they raise Canceled when the task is asked to stop."""
    while True:
        progress.report(task, immediate)
        try:
            await asyncio.wait_for(done.wait(), TICK_SECONDS)
        except TimeoutError:
            continue
        progress.report(task, immediate)
        return


class _FileFailed(Exception):
    """A file that could not be downloaded or stored (`error` says why)."""

    def __init__(self, error: PalletError) -> None:
        super().__init__(error.message)
        self.error = error


def _error(errors: BaseExceptionGroup) -> BaseException:
    """The task's error from the stages' failures: a cancel first, then the files that
    failed (several fail together when they were in flight at once), then any other."""
    flat: list[BaseException] = []
    pending = list(errors.exceptions)
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            flat.append(error)
    if canceled := [e for e in flat if isinstance(e, Canceled)]:
        return canceled[0]
    if files := [e.error for e in flat if isinstance(e, _FileFailed)]:
        return _files_failed(files)
    return next((e for e in flat if isinstance(e, PalletError)), flat[0] if flat else errors)


def _files_failed(failures: list[PalletError]) -> PalletError:
    first = failures[0]
    listed = [{"url": e.details.get("url"), "code": e.code, "message": e.message}
              for e in failures[:REPORTED_FAILURES]]
    details = {**first.details, "failures": listed, "failed": len(failures)}
    if len(failures) == 1:
        return type(first)(first.message, details=details, code=first.code)
    return DownloadError(f"{len(failures)} files could not be downloaded; the first: "
                         f"{first.message}", details=details)
