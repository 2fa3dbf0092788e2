"""Syncing a repository from a remote, as plain async steps:

1. the repository type reads the remote through a `RemoteFiles` (remotes/reader.py): as
   many metadata files as its format needs, each verified into a temporary file;
2. its units are taken in batches of BATCH (memory stays bounded: only the content ids of all
   units are kept, as integers); for each batch, find what exists already (content by
   identity digest, artifacts by sha256), reuse bytes already in the store, and queue the
   missing files (immediate policy) for N workers draining a bounded queue;
3. once a batch's files are in, write its rows in one short transaction: artifacts, new
   content with its content artifacts, links for existing ones, and where each file can be
   fetched from this remote (remote artifacts);
4. make the new version (or none if nothing changed) and its auto-publication in one final
   transaction.

Content written in step 3 is in no version until step 4: invisible, and kept from orphan
cleanup by the shared "orphans" lock every sync holds. A failure or cancel before step 4's
commit leaves the repository as it was; files already verified stay stored for the next try.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit

from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pallet.content.identity import unit_identity
from pallet.content.bulk import NewUnit, find_artifacts, record_artifacts, record_units
from pallet.content.models import ContentArtifact
from pallet.content.service import validate_unit
from pallet.db.bulk import among, id_batches, insert_values
from pallet.errors import Canceled, Invalid, NotFound, PalletError
from pallet.plugin import RemoteFile, RemoteUnit, RepositoryType, SyncOptions, UnitModel
from pallet.plugins import Registry
from pallet.publications.service import autopublish
from pallet.remotes.downloader import Downloader, DownloadError, RemoteConfig, temporary_dir
from pallet.remotes.models import IMMEDIATE, Remote, RemoteArtifact, SyncFingerprint
from pallet.remotes.reader import RemoteFiles, Unchanged
from pallet.remotes.service import check_url, fingerprint_options, get_remote, sync_options
from pallet.repositories.models import Repository
from pallet.repositories.tasks import version_result
from pallet.repositories.versions import create_version, latest_version
from pallet.runtime import Runtime
from pallet.settings import Settings

BATCH = 2000
PENDING_BATCHES = 3  # batches read ahead of the one being written
WRITE_ATTEMPTS = 3  # a batch write retried after losing a race with another sync
REPORTED_FAILURES = 10
TICK_SECONDS = 0.25

CA, RA = ContentArtifact, RemoteArtifact


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

def sync_repository(runtime: Runtime, task, *, repository_id: int, remote_id: int,
                    mirror: bool | None = None) -> None:
    with runtime.db.read() as session:
        repository = _row(session, Repository, repository_id, "repository")
        remote = _row(session, Remote, remote_id, "remote")
        repository_type = check_sync(runtime.plugins, runtime.settings, repository, remote)
        options = sync_options(repository_type, remote.options)
        mirror = remote.mirror if mirror is None else mirror
        sync = _Sync(runtime, task, remote, repository_type, options=options,
                     unchanged=_unchanged_check(session, repository, remote, mirror, options))
    try:
        asyncio.run(sync.fetch())
    except Unchanged:  # the remote's fingerprint file is the one the last sync read
        task.result = {"version": None, "unchanged": True, "mirror": mirror, **sync.counts()}
        return
    with runtime.db.write() as session:
        repository = _row(session, Repository, repository_id, "repository")
        task.progress("creating version", 0, 1)
        version = create_version(session, runtime.plugins, repository, add=sync.content_ids,
                                 remove_all=mirror, progress=task.progress)
        publication = autopublish(session, runtime.plugins, runtime.storage, repository,
                                  version)
        task.progress("creating version", 1, 1)
        task.check_canceled()  # the last chance to stop before the version becomes visible
        result = version_result(task, repository, version, publication)
        _remember_fingerprint(session, repository, remote_id, sync, mirror)
    task.result = {**result, "mirror": mirror, **sync.counts()}


def _unchanged_check(session: Session, repository: Repository, remote: Remote, mirror: bool,
                     options: SyncOptions):
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


def _remember_fingerprint(session: Session, repository: Repository, remote_id: int, sync,
                          mirror: bool) -> None:
    """What this sync read first, for the next one (or nothing, if its type reads none)."""
    session.execute(delete(SyncFingerprint).where(SyncFingerprint.repository_id == repository.id,
                                                  SyncFingerprint.remote_id == remote_id))
    if sync.fingerprint is None:
        return
    session.add(SyncFingerprint(repository_id=repository.id, remote_id=remote_id,
                                sha256=sync.fingerprint,
                                version=latest_version(session, repository).number,
                                policy=sync.policy, mirror=mirror,
                                options=fingerprint_options(sync.options)))


def _row(session: Session, model, row_id: int, what: str):
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"the {what} was deleted before the sync ran",
                       details={f"{what}_id": row_id})
    return row


@dataclass
class _Unit:
    type: str
    digest: str
    data: dict[str, Any]
    files: list[tuple[str, RemoteFile]]


@dataclass
class _Batch:
    units: list[_Unit]
    artifacts: dict[str, tuple[int, int]] = field(default_factory=dict)  # sha -> (id, size)
    stored: dict[str, int] = field(default_factory=dict)  # sha -> size, in store, no row yet
    missing: dict[str, RemoteFile] = field(default_factory=dict)  # sha -> file to fetch
    fetching: dict[str, asyncio.Future] = field(default_factory=dict)  # sha -> its size


class _Sync:
    def __init__(self, runtime: Runtime, task, remote: Remote,
                 repository_type: RepositoryType, *, options: SyncOptions, unchanged) -> None:
        self.runtime, self.task, self.repository_type = runtime, task, repository_type
        self.options = options
        self.remote_id, self.immediate = remote.id, remote.policy == IMMEDIATE
        self.policy, self._unchanged = remote.policy, unchanged
        self.fingerprint: str | None = None
        self.config = RemoteConfig.from_remote(remote)
        remote_scheme = urlsplit(remote.url).scheme.lower()
        self.url_schemes = ("file",) if remote_scheme == "file" else ("http", "https")
        self.content_ids = array("q")
        self.failures: list[PalletError] = []
        self.units = self.written = self.reused = 0
        self.files_done = self.files_planned = self.bytes_done = self.bytes_planned = 0
        self.index_read = False
        self._fetching: dict[str, asyncio.Future] = {}  # sha -> size, across batches

    def counts(self) -> dict[str, int]:
        return {"units": self.units, "downloaded": self.files_done, "bytes": self.bytes_done,
                "reused": self.reused}

    # -- the async part: index, batches, downloads --------------------------------------------

    async def fetch(self) -> None:
        storage, settings = self.runtime.storage, self.runtime.settings
        async with Downloader(self.config, settings, storage) as downloader:
            self.task.progress("downloading index", 0, None)
            remote = RemoteFiles(
                self.config.url, downloader, asyncio.get_running_loop(),
                schemes=self.url_schemes, limit=settings.max_index_size,
                tmp_dir=temporary_dir(storage),
                progress=lambda done, total: self.task.progress("downloading index", done,
                                                                total),
                unchanged=self._unchanged, options=self.options)
            try:
                units = self._read(self.repository_type.read_remote(remote), remote)
                await self._run(downloader, units)
            finally:
                self.fingerprint = remote.fingerprint
                remote.close()
        if self.failures:
            raise self._failure()

    async def _run(self, downloader: Downloader, units: Iterator[_Unit]) -> None:
        workers = self.config.download_concurrency if self.immediate else 0
        queue: asyncio.Queue = asyncio.Queue(maxsize=2 * max(workers, 1))
        self._write_lock = asyncio.Lock()
        self._pending = asyncio.Semaphore(PENDING_BATCHES)
        self._done = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._tick())
                for _ in range(workers):
                    group.create_task(self._work(downloader, queue))
                group.create_task(self._produce(units, queue, group, workers))
        except BaseExceptionGroup as errors:
            raise _first(errors) from None

    async def _produce(self, units: Iterator[_Unit], queue: asyncio.Queue,
                       group: asyncio.TaskGroup, workers: int) -> None:
        writing = []
        # The next batch is read while this one's files are queued: reading it only once
        # the queue ran dry would leave the workers idle meanwhile.
        planned = group.create_task(self._plan_next(units))
        while (batch := await planned) is not None and not self.failures:
            planned = group.create_task(self._plan_next(units))
            for job in self._claim(batch):
                await queue.put(job)
            writing.append(group.create_task(self._finish(batch)))
        self.index_read = True
        for _ in range(workers):
            await queue.put(None)
        await asyncio.gather(*writing)
        self._done.set()

    async def _plan_next(self, units: Iterator[_Unit]) -> _Batch | None:
        await self._pending.acquire()
        batch = await asyncio.to_thread(self._plan, units)
        if batch is None:
            self._pending.release()
        return batch

    def _claim(self, batch: _Batch) -> list[tuple[RemoteFile, asyncio.Future]]:
        """Downloads of the batch's files nobody fetches yet; it waits for the others."""
        loop = asyncio.get_running_loop()
        mine = []
        for sha256, file in batch.missing.items():
            if sha256 not in self._fetching:
                self._fetching[sha256] = loop.create_future()
                mine.append((file, self._fetching[sha256]))
                self.files_planned += 1
                self.bytes_planned += file.size or 0
            batch.fetching[sha256] = self._fetching[sha256]
        return mine

    async def _work(self, downloader: Downloader, queue: asyncio.Queue) -> None:
        while (job := await queue.get()) is not None:
            file, future = job
            if self.failures:
                future.set_result(None)  # stopping: skip the rest
                continue
            try:
                _, size = await downloader.download(file)
            except PalletError as exc:
                self.failures.append(exc)
                future.set_result(None)
                continue
            except OSError as exc:  # the store's disk, not the remote
                self.failures.append(PalletError(
                    f"storing {file.url} failed: {exc.strerror or exc}",
                    code="storage_failed", details={"url": file.url}))
                future.set_result(None)
                continue
            self.files_done += 1
            self.bytes_done += size
            future.set_result(size)

    async def _finish(self, batch: _Batch) -> None:
        try:
            sizes = await asyncio.gather(*batch.fetching.values())
            if self.failures:
                return
            batch.stored.update(zip(batch.fetching, sizes))
            async with self._write_lock:
                await asyncio.to_thread(self._write, batch)
            self.written += len(batch.units)
        finally:
            for sha256 in batch.fetching:
                self._fetching.pop(sha256, None)
            self._pending.release()

    async def _tick(self) -> None:
        """Progress reports; they raise Canceled when someone asked the task to stop."""
        while True:
            self._report()
            try:
                await asyncio.wait_for(self._done.wait(), TICK_SECONDS)
            except TimeoutError:
                continue
            self._report()
            return

    def _report(self) -> None:
        total = self.units if self.index_read else None
        self.task.progress("reading index", self.units, total)
        if self.immediate:
            self.task.progress("downloading", self.files_done,
                               self.files_planned if self.index_read else None)
            self.task.progress("downloading bytes", self.bytes_done, self.bytes_planned)
        self.task.progress("saving content", self.written, total)

    def _failure(self) -> PalletError:
        first = self.failures[0]
        failures = [{"url": e.details.get("url"), "code": e.code, "message": e.message}
                    for e in self.failures[:REPORTED_FAILURES]]
        details = {**first.details, "failures": failures, "failed": len(self.failures)}
        if len(self.failures) == 1:
            return type(first)(first.message, details=details, code=first.code)
        return DownloadError(f"{len(self.failures)} files could not be downloaded; the "
                             f"first: {first.message}", details=details)

    # -- reading the index (in a thread) ------------------------------------------------------

    def _read(self, remote_units: Iterable[RemoteUnit], remote: RemoteFiles
              ) -> Iterator[_Unit]:
        try:
            for remote_unit in remote_units:
                yield self._unit(remote_unit)
        except Invalid as exc:
            if exc.code != "invalid":  # a digest or size the remote's own metadata refutes
                raise
            url = remote.last_url
            raise Invalid(f"the index {url} is not valid: {exc.message}",
                          details={**exc.details, "url": url}) from None

    def _unit(self, remote_unit: RemoteUnit) -> _Unit:
        plugins = self.runtime.plugins
        if remote_unit.type not in self.repository_type.content_types:
            raise Invalid(f"it lists a unit of type {remote_unit.type!r}, which a "
                          f"{self.repository_type.name} repository cannot hold")
        content_type = plugins.content_type(remote_unit.type)
        unit = remote_unit.fields
        if not isinstance(unit, content_type.model):  # a dict, or another type's model
            content_type, unit = validate_unit(plugins, remote_unit.type,
                                               _as_dict(remote_unit.fields))
        data = unit.model_dump(mode="json")
        expected = {path: sha.lower() for path, sha in content_type.artifacts(unit).items()}
        announced = {path: file.sha256.lower() for path, file in remote_unit.files.items()}
        if expected != announced:
            key = {name: data[name] for name in content_type.key_fields}
            raise Invalid(f"the files listed for unit {key} do not match its fields")
        files = []
        for path in sorted(expected):
            file = remote_unit.files[path]
            if not self._allowed_scheme(file.url):
                raise Invalid(f"the URL {file.url[:200]!r} of {path!r} is not allowed from "
                              f"this remote (use {' or '.join(self.url_schemes)})")
            if file.sha256 != expected[path]:
                file = dataclasses.replace(file, sha256=expected[path])
            files.append((path, file))
        return _Unit(remote_unit.type,
                     unit_identity(remote_unit.type, content_type.key_fields, data), data, files)

    def _allowed_scheme(self, url: str) -> bool:
        # What precedes the first colon, when it is an allowed scheme, is what urlsplit
        # finds too; anything else gets urlsplit's verdict (it strips spaces, for one).
        colon = url.find(":")
        if colon > 0 and url[:colon].lower() in self.url_schemes:
            return True
        return urlsplit(url).scheme.lower() in self.url_schemes

    def _plan(self, units: Iterator[_Unit]) -> _Batch | None:
        """The next batch: what exists, what is stored without a row, what to fetch."""
        batch = _Batch(list(itertools.islice(units, BATCH)))
        if not batch.units:
            return None
        self.units += len(batch.units)
        files = {file.sha256: file for unit in batch.units for _, file in unit.files}
        with self.runtime.db.read() as session:
            batch.artifacts.update(find_artifacts(session, files))
        if self.immediate:
            storage = self.runtime.storage
            for sha256, file in files.items():
                if sha256 in batch.artifacts:
                    # Recorded; fetched again if its bytes went missing from the store. One
                    # stat per file: 13 µs measured on a busy machine, 1.3 s per 100,000.
                    if not storage.exists(sha256):
                        batch.missing[sha256] = file
                    continue
                if storage.exists(sha256):  # verified bytes whose row went missing: reuse
                    with storage.open(sha256) as stream:
                        batch.stored[sha256] = stream.seek(0, os.SEEK_END)
                    self.reused += 1
                else:
                    batch.missing[sha256] = file
        return batch

    # -- writing a batch (in a thread) --------------------------------------------------------

    def _write(self, batch: _Batch) -> None:
        self.runtime.storage.flush()  # the batch's small files are durable before recorded
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self.runtime.db.write() as session:
                    artifacts = self._record_artifacts(session, batch)
                    ids = self._record_content(session, batch, artifacts)
                    self._record_remote_files(session, batch, ids)
                break
            except IntegrityError:  # another sync added the same rows: look again
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
        self.content_ids.extend(ids.values())

    def _record_artifacts(self, session: Session, batch: _Batch) -> dict[str, tuple[int, int]]:
        """sha256 -> (artifact id, size) for every file of the batch that has its bytes."""
        artifacts = dict(batch.artifacts)
        artifacts.update(record_artifacts(session, {sha: size for sha, size in
                                                    batch.stored.items() if sha not in artifacts}))
        return artifacts

    def _record_content(self, session: Session, batch: _Batch,
                        artifacts: dict[str, tuple[int, int]]) -> dict[str, int]:
        """digest -> content id for the batch's units, creating the new ones with their
        content artifacts, and linking stored bytes to existing units that lacked them."""
        return record_units(session, self.runtime.plugins, (NewUnit(u.type, u.digest, u.data,
                                              tuple((path, f.sha256, f.size)
                                                    for path, f in u.files))
                                      for u in batch.units), artifacts)

    def _record_remote_files(self, session: Session, batch: _Batch,
                             ids: dict[str, int]) -> None:
        """Where each file can be fetched from this remote: one row per (file, remote),
        updated when the URL or size moved."""
        wanted: dict[tuple[int, str], RemoteFile] = {
            (ids[unit.digest], path): file for unit in batch.units for path, file in unit.files}
        by_key: dict[int, RemoteFile] = {}
        for chunk in id_batches(session, sorted({content_id for content_id, _ in wanted})):
            for ca_id, content_id, path in session.execute(
                    select(CA.id, CA.content_id, CA.relative_path)
                    .where(among(session, CA.content_id, chunk))):
                if (content_id, path) in wanted:
                    by_key[ca_id] = wanted[(content_id, path)]
        known: dict[int, tuple[int, str, int | None]] = {}
        for chunk in id_batches(session, sorted(by_key)):
            known.update((ca_id, (ra_id, url, size)) for ra_id, ca_id, url, size in
                         session.execute(select(RA.id, RA.content_artifact_id, RA.url, RA.size)
                                         .where(RA.remote_id == self.remote_id,
                                                among(session, RA.content_artifact_id, chunk))))
        rows, moved = [], []
        for ca_id, file in by_key.items():
            if ca_id not in known:
                rows.append((ca_id, self.remote_id, file.url, file.sha256, file.size))
            elif known[ca_id][1:] != (file.url, file.size):
                moved.append({"ra_id": known[ca_id][0], "url": file.url, "size": file.size})
        insert_values(session, RA.__table__,
                      ("content_artifact_id", "remote_id", "url", "sha256", "size"), rows)
        if moved:  # a new place: give it a fresh chance if the old one had failed
            table = RA.__table__
            session.execute(table.update().where(table.c.id == bindparam("ra_id"))
                            .values(url=bindparam("url"), size=bindparam("size"),
                                    failed_at=None), moved)


def _as_dict(fields) -> dict[str, Any]:
    return fields.model_dump() if isinstance(fields, UnitModel) else fields


def _first(errors: BaseExceptionGroup) -> BaseException:
    """The error to report from a task group: a cancel first, then a Pallet error, then any."""
    flat: list[BaseException] = []
    pending = list(errors.exceptions)
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            flat.append(error)
    for kind in (Canceled, PalletError, BaseException):
        for error in flat:
            if isinstance(error, kind):
                return error
    return errors
