"""Tasks of the air-gap transfer: export, and import or its check.

An export holds its exporter exclusively and each exported repository shared (no version
can be deleted under it), and reads in one snapshot. An import holds every destination
exclusively and the orphans lock shared; its check holds nothing, as it writes nothing.
"""

from __future__ import annotations

import io
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, BinaryIO, Iterator

from sqlalchemy import select

from pallet.errors import Invalid, NotFound
from pallet.paths import allowed_path, regular_file
from pallet.publications.models import Publication
from pallet.repositories.models import Repository, RepositoryVersion
from pallet.repositories.versions import get_version, latest_version
from pallet.orphans.service import LOCK as ORPHANS_LOCK
from pallet.runtime import Runtime
from pallet.tasks.bound import run_bound
from pallet.tasks.registry import task_function
from pallet.transfer import export as exporting, layout, service
from pallet.transfer.chunks import FileSink
from pallet.transfer.imports import ArchiveImport
from pallet.transfer.models import Export, Exporter, Importer, SigningKey
from pallet.transfer.reader import ArchiveReader, open_files, open_stream
from pallet.transfer.tree import write_tree
from pallet.transfer.writer import write_toc_file
from pallet.uploads.service import check_complete, get_upload, upload_path
from pallet.uploads.tasks import consuming

TOC_SUFFIX = layout.TOC_FILE_SUFFIX


# -- export ---------------------------------------------------------------------------------

def selections(session, exporter: Exporter, *, incremental: bool,
               versions: dict[str, int], start_versions: dict[str, int]
               ) -> list[exporting.Selection]:
    """The versions an export writes, and where an incremental one starts."""
    names = service.repository_names(session, exporter.repository_ids)
    unknown = sorted((set(versions) | set(start_versions)) - set(names))
    if unknown:
        raise Invalid(f"exporter {exporter.name!r} does not export {', '.join(unknown)}",
                      details={"repositories": unknown})
    previous = service.last_export(session, exporter)
    bases = {entry["repository_id"]: entry["version"]
             for entry in (previous.versions if previous else [])}
    chosen = []
    for repository_id, name in zip(exporter.repository_ids, names):
        repository = session.get(Repository, repository_id)
        if repository is None:
            raise NotFound(f"repository {name} of exporter {exporter.name!r} was deleted; "
                           "update the exporter", details={"repository_id": repository_id})
        version = (get_version(session, repository, versions[name]) if name in versions
                   else latest_version(session, repository))
        base = None
        if name in start_versions:
            base = get_version(session, repository, start_versions[name])
        elif incremental:
            if repository_id not in bases:
                raise Invalid(f"repository {name} was not in exporter {exporter.name!r}'s "
                              "last export: export it in full, or give its start version",
                              details={"repository": name})
            base = session.scalar(select(RepositoryVersion).where(
                RepositoryVersion.repository_id == repository_id,
                RepositoryVersion.number == bases[repository_id]))
            if base is None:
                raise Invalid(f"version {bases[repository_id]} of {name}, where the last "
                              "export ended, was deleted: export in full, or give a start "
                              "version", details={"repository": name})
        chosen.append(exporting.Selection(repository, version, base))
    return chosen


@dataclass(frozen=True)
class PreparedExport:
    """What an export writes, counted before its first byte: versions, key and header."""

    chosen: list[exporting.Selection]
    key: SigningKey | None
    document: dict[str, Any]

    @property
    def private_key(self) -> str | None:
        return self.key.private_key if self.key else None


def prepare_export(session, exporter: Exporter, *, incremental: bool,
                   versions: dict[str, int], start_versions: dict[str, int]) -> PreparedExport:
    chosen = selections(session, exporter, incremental=incremental, versions=versions,
                        start_versions=start_versions)
    exporting.check_downloaded(session, chosen)
    key = session.get(SigningKey, exporter.signing_key_id) if exporter.signing_key_id else None
    return PreparedExport(chosen, key, exporting.header(session, chosen,
                                                        exporter=exporter.name))


def _exporter(session, exporter_id: int) -> Exporter:
    exporter = session.get(Exporter, exporter_id)
    if exporter is None:
        raise NotFound("the exporter was deleted before the task ran")
    return exporter


@task_function("transfer.export")
def export(runtime: Runtime, task, *, exporter_id: int, incremental: bool = False,
           versions: dict[str, int] | None = None, start_versions: dict[str, int] | None = None,
           chunk_size: int | None = None, single_file: bool = False,
           fetch: bool = True) -> None:
    started = time.monotonic()
    if fetch:
        exporting.fetch_missing(runtime, lambda session: selections(
            session, _exporter(session, exporter_id), incremental=incremental,
            versions=versions or {}, start_versions=start_versions or {}), task.progress)
    with runtime.db.snapshot() as session:
        exporter = _exporter(session, exporter_id)
        prepared = prepare_export(session, exporter, incremental=incremental,
                                  versions=versions or {}, start_versions=start_versions or {})
        chosen, key, document = prepared.chosen, prepared.key, prepared.document
        directory = service.check_export_dir(runtime.settings, exporter.path)
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base = f"{exporter.name}-{stamp}-{document['export_id'][:8]}"
        size = None if single_file else (chunk_size or exporter.chunk_size)
        sink = FileSink(directory, f"{base}.tar", size)
        try:
            chunks, toc = exporting.write_archive(
                session, runtime.storage, chosen, document, sink,
                private_key=prepared.private_key, progress=task.progress)
            write_toc_file(directory / f"{base}{TOC_SUFFIX}", toc)
            sink.release()  # complete: nothing for the next export to remove
        except BaseException:
            sink.abort()
            raise
    try:
        with runtime.db.write() as session:
            record = record_export(session, exporter_id, chosen, document, chunks, key,
                                   time.monotonic() - started, directory=str(directory),
                                   toc_file=f"{base}{TOC_SUFFIX}")
    except BaseException:
        (directory / f"{base}{TOC_SUFFIX}").unlink(missing_ok=True)
        sink.abort()
        raise
    task.created(f"/api/v1/exports/{record.id}")
    task.result = {"export": record.id, "toc": str(directory / record.toc_file),
                   "chunks": len(chunks), "bytes": record.bytes,
                   "artifacts": record.artifacts, "incremental": record.incremental}


def record_export(session, exporter_id: int, chosen: list[exporting.Selection],
                  document: dict[str, Any], chunks: list, key, seconds: float, *,
                  directory: str | None = None, toc_file: str | None = None) -> Export:
    """The export's row: its pieces, what it holds, and where the next incremental starts."""
    record = Export(
        exporter_id=exporter_id, export_uuid=document["export_id"],
        incremental=document["incremental"], directory=directory, toc_file=toc_file,
        chunks=[c.as_dict() for c in chunks],
        versions=[{"repository_id": s.repository.id, "name": s.repository.name,
                   "version": s.version.number, "digest": s.version.digest,
                   "base_version": s.base.number if s.base else None} for s in chosen],
        summary=document, signed_by=key.key_id if key else None,
        artifacts=document["artifacts"], bytes=sum(c.size for c in chunks),
        duration_seconds=seconds)
    session.add(record)
    session.flush()
    return record


@task_function("transfer.tree")
def export_tree(runtime: Runtime, task, *, publication_id: int, path: str,
                method: str = "copy", start_version: int | None = None) -> None:
    """Write a publication as a plain directory tree under the allowed export directories."""
    with runtime.db.snapshot() as session:
        publication = session.get(Publication, publication_id)
        if publication is None:
            raise NotFound("the publication was deleted before the task ran")
        target = service.check_export_dir(runtime.settings, path)
        task.result = write_tree(session, runtime.storage, publication, target,
                                 method=method, start_version=start_version,
                                 progress=task.progress)


# -- import ---------------------------------------------------------------------------------

@contextmanager
def open_archive(runtime: Runtime, *, path: str | None = None, upload_id: int | None = None,
                 stream: BinaryIO | None = None) -> Iterator[tuple[ArchiveReader, str]]:
    """A reader of the archive at `path` (a table of contents, or a single-stream archive,
    under the allowed import directories), in upload `upload_id`, or in `stream` (a
    request's body); and a label for it."""
    if stream is not None:
        yield open_stream(stream), "a stream"
        return
    if (path is None) == (upload_id is None):
        raise Invalid("name the archive by its path or by an upload, not both",
                      details={"field": "path"})
    if upload_id is not None:
        with runtime.db.read() as session:
            check_complete(session, get_upload(session, upload_id))
        file = upload_path(runtime.settings, upload_id)
        label = f"upload {upload_id}"
    else:
        file = regular_file(allowed_path(path, runtime.settings.allowed_import_dirs,
                                         setting="allowed_import_dirs"))
        label = str(file)
    if path is not None and file.name.endswith(TOC_SUFFIX):
        reader, _ = open_files(file)
        try:
            yield reader, label
        finally:
            reader.source.close()
        return
    try:
        stream = open(file, "rb")
    except FileNotFoundError:
        raise NotFound(f"there is no archive at {label}", details={"path": label}) from None
    except OSError as exc:
        raise Invalid(f"cannot read {label}: {exc.strerror}") from None
    with stream:
        yield open_stream(stream), label


def destinations(runtime: Runtime, importer: Importer, *, path: str | None = None,
                 upload_id: int | None = None) -> list[str]:
    """The repository names an archive would import into (read from its header only)."""
    with open_archive(runtime, path=path, upload_id=upload_id) as (reader, _):
        header = reader.header()
    return [importer.mapping.get(entry.name, entry.name) for entry in header.repositories]


def import_locks(runtime: Runtime, names: list[str]) -> list[str]:
    with runtime.db.read() as session:
        ids = dict(session.execute(select(Repository.name, Repository.id)
                                   .where(Repository.name.in_(names))).all())
    return [f"repository:{ids[name]}" if name in ids else f"repository-name:{name}"
            for name in names]


def _run(runtime: Runtime, task, importer_id: int, path: str | None, upload_id: int | None,
         dry_run: bool, destinations_locked: list[str] | None = None,
         stream: BinaryIO | None = None) -> dict[str, Any]:
    with runtime.db.read() as session:
        importer = session.get(Importer, importer_id)
        if importer is None:
            raise NotFound("the importer was deleted before the task ran")
    if stream is None and destinations_locked is not None and destinations(
            runtime, importer, path=path, upload_id=upload_id) != destinations_locked:
        raise Invalid("the importer's mapping changed after the import was queued; run it "
                      "again", details={"locked": destinations_locked})
    streamed = path is None or not path.endswith(TOC_SUFFIX)
    if not dry_run and streamed and (importer.require_signature or importer.trusted_keys):
        if stream is not None:
            raise Invalid(f"importer {importer.name!r} trusts signing keys, and a piped "
                          "stream cannot be verified before it is stored: import from files "
                          "or an upload", code="signature")
        # A stream's signature comes last: verify the whole archive before storing a byte.
        _run(runtime, task, importer_id, path, upload_id, dry_run=True)
    with open_archive(runtime, path=path, upload_id=upload_id, stream=stream) as (reader,
                                                                                  label):
        return ArchiveImport(runtime, importer, reader, source=label, dry_run=dry_run,
                             progress=task.progress).run()


# The bodies of requests running a bound import, by task id (this process only).
STREAMS: dict[int, BinaryIO] = {}


class _Replay(io.RawIOBase):
    """Bytes already read (to learn the header), then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.head:
            data, self.head = self.head[:n], self.head[n:]
            return data
        return self.rest.read(n)


class _Recording:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.seen = stream, bytearray()

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        self.seen += data
        return data


def import_stream(runtime: Runtime, importer: Importer, body: BinaryIO, *,
                  created_by: str | None) -> int:
    """Import the archive `body` (a request's) as a task this thread runs; its id."""
    recording = _Recording(body)
    header = open_stream(recording).header()
    names = [importer.mapping.get(entry.name, entry.name) for entry in header.repositories]
    replay = _Replay(bytes(recording.seen), body)
    started: list[int] = []

    def hand_over(task_id: int) -> None:
        started.append(task_id)
        STREAMS[task_id] = replay

    try:
        return run_bound(runtime, import_archive,
                         exclusive=[f"importer:{importer.id}", *import_locks(runtime, names)],
                         shared=[ORPHANS_LOCK], created_by=created_by, before_run=hand_over,
                         importer_id=importer.id, destinations=names, stream=True)
    finally:
        for task_id in started:
            STREAMS.pop(task_id, None)


@task_function("transfer.check")
def check(runtime: Runtime, task, *, importer_id: int, path: str | None = None,
          upload_id: int | None = None) -> None:
    """Validate an archive against this server and report the import's plan."""
    with consuming(runtime, task, upload_id):
        task.result = _run(runtime, task, importer_id, path, upload_id, dry_run=True)


@task_function("transfer.import")
def import_archive(runtime: Runtime, task, *, importer_id: int, path: str | None = None,
                   upload_id: int | None = None, destinations: list[str] | None = None,
                   stream: bool = False) -> None:
    """Import an archive. `destinations`: the repositories the task locked when queued;
    `stream`: the archive is the body of the request running this (bound) task."""
    body = STREAMS.pop(task.id) if stream else None
    with consuming(runtime, task, upload_id):
        plan = _run(runtime, task, importer_id, path, upload_id, dry_run=False,
                    destinations_locked=destinations, stream=body)
    if body is not None and body.read(1):
        raise Invalid("the request holds bytes after the archive's end")
    for repository in plan["repositories"]:
        if repository.get("version") is not None and not repository["up_to_date"]:
            task.created(f"/api/v1/repositories/{repository['destination']}/versions/"
                         f"{repository['version']}")
    task.created(f"/api/v1/imports/{plan['import']}")
    task.result = plan

