"""Fetching bytes that should be stored and are not, from the remotes that offer them: the
files of on-demand units before an export or a replication stream, and the missing or
corrupt artifacts a repair brings back.

A `Fetcher` takes batches of wanted files (sha256 and size). For each batch it finds every
remote file offering those bytes (`remote_artifact` rows), downloads each file through the
core `Downloader` of its remote (TLS, auth, retries, timeouts, connection limit: one
downloader per remote configuration, kept across batches), verified against its sha256, and
records what arrived with `record_fetched`, as the content app does for a client. A remote
file whose bytes fail verification is marked failed (the content app's cool-down). Memory
stays bounded: one batch at a time, files streamed to the store.

Nothing here holds a database session across network I/O: sources are read, and results
written, in short transactions around each batch's downloads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pallet.artifacts.service import record_artifact
from pallet.artifacts.storage import DigestMismatch
from pallet.content.bulk import among_text
from pallet.content.models import ContentArtifact
from pallet.errors import PalletError
from pallet.plugin import RemoteFile
from pallet.remotes.downloader import Downloader, RemoteConfig
from pallet.remotes.models import Remote, RemoteArtifact
from pallet.runtime import Runtime

BATCH = 200  # wanted files per batch
MAX_WORKERS = 32
GIVE_UP = 10  # failures in a row after which a remote is not tried again by this fetcher
CA, RA = ContentArtifact, RemoteArtifact
# progress(stage, done, total), as a task reports it (it raises Canceled when asked to stop).
Progress = Callable[[str, int, int | None], None]
FILES_STAGE, BYTES_STAGE = "fetching missing files", "fetching missing bytes"


def record_fetched(session: Session, sha256: str, size: int) -> None:
    """Bytes fetched from a remote are in the store (verified): record the artifact and
    link every file that expects these bytes and had none."""
    artifact = record_artifact(session, sha256=sha256, size=size)
    session.execute(update(CA).where(CA.sha256 == sha256, CA.artifact_id.is_(None))
                    .values(artifact_id=artifact.id))


def mark_failed(session: Session, remote_artifact_id: int) -> None:
    """A remote file sent bytes that failed verification: its cool-down starts now."""
    session.execute(update(RA).where(RA.id == remote_artifact_id)
                    .values(failed_at=datetime.now(timezone.utc)))


@dataclass(frozen=True)
class Wanted:
    sha256: str
    size: int | None


@dataclass(frozen=True)
class Source:
    remote_artifact_id: int
    file: RemoteFile
    config: RemoteConfig
    failed: bool  # its bytes failed verification before: tried last


def sources_of(session: Session, shas: list[str]) -> dict[str, list[Source]]:
    """sha256 -> the remote files offering those bytes (through any unit's file), those
    that never failed verification first."""
    rows = session.execute(
        select(RA.id, RA.url, RA.size, RA.failed_at, CA.sha256, Remote)
        .join(CA, CA.id == RA.content_artifact_id).join(Remote, Remote.id == RA.remote_id)
        .where(among_text(session, CA.sha256, shas))
        .order_by(RA.failed_at.is_not(None), RA.id))
    configs: dict[int, RemoteConfig] = {}
    found: dict[str, list[Source]] = {}
    for ra_id, url, size, failed_at, sha256, remote in rows:
        config = configs.setdefault(remote.id, RemoteConfig.from_remote(remote))
        found.setdefault(sha256, []).append(
            Source(ra_id, RemoteFile(url, sha256, size), config, failed_at is not None))
    return found


@dataclass
class Fetched:
    """What one batch brought: sha256 -> size stored; sha256 -> why not."""

    stored: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


class Fetcher:
    """Use as `with Fetcher(runtime, total=…, total_bytes=…, progress=…) as f: f.fetch(batch)`.
    The downloads run on an event loop in the calling thread (`asyncio.Runner`), so
    progress reports, and the Canceled they raise, come from the caller's thread."""

    def __init__(self, runtime: Runtime, *, total: int | None = None,
                 total_bytes: int | None = None, progress: Progress | None = None) -> None:
        self.runtime, self.total, self.total_bytes = runtime, total, total_bytes
        self.progress = progress or (lambda stage, done, total: None)
        self.done = self.bytes_done = 0
        self._downloaders: dict[RemoteConfig, Downloader] = {}
        self._opening = asyncio.Lock()  # one downloader per configuration, however many ask
        # Failures in a row per remote: one that is down is given up on (each try costs its
        # retries and back-off) instead of being tried for every one of its files.
        self._failures: dict[RemoteConfig, int] = {}
        self._runner = asyncio.Runner()

    def __enter__(self) -> "Fetcher":
        self._report()
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._runner.run(self._close())
        finally:
            self._runner.close()

    def fetch(self, wanted: list[Wanted]) -> Fetched:
        """Fetch one batch (at most BATCH files is a good size) and record what arrived."""
        with self.runtime.db.read() as session:
            sources = sources_of(session, sorted({w.sha256 for w in wanted}))
        fetched, bad = Fetched(), []
        self._runner.run(self._fetch_all(wanted, sources, fetched, bad))
        self.runtime.storage.flush()  # small files are made durable in batches
        if fetched.stored or bad:
            with self.runtime.db.write() as session:
                for sha256, size in sorted(fetched.stored.items()):
                    record_fetched(session, sha256, size)
                for remote_artifact_id in bad:
                    mark_failed(session, remote_artifact_id)
        return fetched

    async def _fetch_all(self, wanted: list[Wanted], sources: dict[str, list[Source]],
                         fetched: Fetched, bad: list[int]) -> None:
        workers = min(MAX_WORKERS, max([s.config.download_concurrency
                                        for found in sources.values() for s in found] or [1]))
        limit = asyncio.Semaphore(workers)

        async def one(item: Wanted) -> None:
            async with limit:
                await self._fetch_one(item, sources.get(item.sha256, []), fetched, bad)
                self.done += 1
                self._report()  # raises Canceled when asked to stop: the group stops

        try:
            async with asyncio.TaskGroup() as group:
                for item in wanted:
                    group.create_task(one(item))
        except BaseExceptionGroup as errors:
            raise errors.exceptions[0] from None

    async def _fetch_one(self, item: Wanted, sources: list[Source], fetched: Fetched,
                         bad: list[int]) -> None:
        """Try each remote file offering the bytes until one delivers them verified."""
        if not sources:
            fetched.failed[item.sha256] = "no remote offers these bytes"
            return
        reasons = []
        for source in sources:
            config = source.config
            if self._failures.get(config, 0) >= GIVE_UP:
                reasons.append(f"remote {config.name!r} failed {GIVE_UP} times in a row: "
                               "not tried again this time")
                continue
            file = source.file if source.file.size is not None or item.size is None else \
                RemoteFile(source.file.url, item.sha256, item.size)
            try:
                downloader = await self._downloader(config)
                _, size = await downloader.download(file)
            except PalletError as exc:
                if isinstance(exc, DigestMismatch):
                    bad.append(source.remote_artifact_id)
                self._failures[config] = self._failures.get(config, 0) + 1
                reasons.append(exc.message)
            except OSError as exc:  # the store's disk, not the remote
                reasons.append(f"storing {file.url} failed: {exc.strerror or exc}")
            else:
                self._failures[config] = 0
                fetched.stored[item.sha256] = size
                self.bytes_done += size
                return
        fetched.failed[item.sha256] = "; ".join(reasons)

    async def _downloader(self, config: RemoteConfig) -> Downloader:
        async with self._opening:
            downloader = self._downloaders.get(config)
            if downloader is None:
                downloader = Downloader(config, self.runtime.settings, self.runtime.storage)
                self._downloaders[config] = await downloader.__aenter__()
            return downloader

    async def _close(self) -> None:
        while self._downloaders:
            _, downloader = self._downloaders.popitem()
            await downloader.__aexit__(None, None, None)

    def _report(self) -> None:
        self.progress(FILES_STAGE, self.done, self.total)
        self.progress(BYTES_STAGE, self.bytes_done, self.total_bytes)
