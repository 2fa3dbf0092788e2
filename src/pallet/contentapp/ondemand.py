"""Files whose bytes are not stored (on-demand and streamed remotes): fetched from a remote
when a client asks, verified on the way, and relayed to the client.

The bytes come from the remote's `Downloader.stream`, which holds back the last chunk until
the digest is verified and raises instead of yielding it on a mismatch. So a client never receives a
complete bad file: the connection is cut before the last byte, and that remote file is not
tried again for `remote_cooldown_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

from sqlalchemy import select

from pallet.artifacts.storage import DigestMismatch
from pallet.contentapp.lookup import timestamp
from pallet.plugin import RemoteFile
from pallet.remotes.downloader import Downloader, RemoteConfig
from pallet.remotes.fetch import mark_failed, record_fetched
from pallet.remotes.models import STREAMED, Remote, RemoteArtifact
from pallet.runtime import Runtime

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The file cannot be fetched now: answered with `status` before any header is sent."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class RemoteSource:
    remote_artifact_id: int
    url: str
    sha256: str
    size: int | None
    failed_at: float | None
    remote: Remote


def remote_sources(session, content_artifact_id: int) -> list[RemoteSource]:
    rows = session.execute(
        select(RemoteArtifact, Remote).join(Remote, Remote.id == RemoteArtifact.remote_id)
        .where(RemoteArtifact.content_artifact_id == content_artifact_id)
        .order_by(RemoteArtifact.id)).all()
    return [RemoteSource(ra.id, ra.url, ra.sha256, ra.size,
                         None if ra.failed_at is None else timestamp(ra.failed_at), remote)
            for ra, remote in rows]


def cooling_until(source: RemoteSource, cooldown: float) -> float | None:
    """When a remote file that failed verification may be tried again (None: now)."""
    return None if source.failed_at is None else source.failed_at + cooldown


class RemoteFetcher:
    """Fetches files for the content app, with one downloader (HTTP session) per remote
    configuration, kept while the app runs."""

    MAX_DOWNLOADERS = 32

    def __init__(self, runtime: Runtime, db_pool: Executor) -> None:
        self.runtime, self.db_pool = runtime, db_pool
        self._downloaders: OrderedDict[RemoteConfig, list] = OrderedDict()  # [downloader, users]
        self._lock = asyncio.Lock()

    async def _in_db(self, function, *args, write: bool = False):
        def run():
            with (self.runtime.db.write() if write else self.runtime.db.read()) as session:
                return function(session, *args)
        return await asyncio.get_running_loop().run_in_executor(self.db_pool, run)

    async def open(self, content_artifact_id: int) -> tuple[RemoteSource, AsyncIterator[bytes]]:
        """The chosen remote file and its verified bytes, or Unavailable."""
        sources = await self._in_db(remote_sources, content_artifact_id)
        if not sources:
            raise Unavailable(404, "the file's bytes are not stored and no remote offers them")
        now = datetime.now(timezone.utc).timestamp()
        cooldown = self.runtime.settings.remote_cooldown_seconds
        usable = [s for s in sources if (cooling_until(s, cooldown) or 0) <= now]
        if not usable:
            retry = min(cooling_until(s, cooldown) for s in sources) - now
            raise Unavailable(502, "the remote's bytes for this file failed verification; it "
                              f"is tried again in {timedelta(seconds=int(retry) + 1)}")
        source = usable[0]
        return source, self.fetch(source)

    async def fetch(self, source: RemoteSource) -> AsyncIterator[bytes]:
        """The remote file's bytes through the downloader: verified against the digest with
        the last chunk held back until they match, and stored on the way (and recorded)
        unless the remote's policy is `streamed`."""
        store = source.remote.policy != STREAMED
        file = RemoteFile(source.url, source.sha256, source.size)
        config = RemoteConfig.from_remote(source.remote)
        downloader = await self._downloader(config)
        size, recorded = 0, False
        try:
            async with contextlib.aclosing(downloader.stream(file, store=store)) as chunks:
                async for chunk in chunks:
                    size += len(chunk)
                    if store and size == source.size:
                        # The downloader verified and stored the bytes before handing out
                        # the last chunk: record them before the client can see the end,
                        # so its next request finds the artifact.
                        await self._in_db(record_fetched, source.sha256, size, write=True)
                        recorded = True
                    yield chunk
        finally:
            entry = self._downloaders.get(config)
            if entry is not None:
                entry[1] -= 1
        if store and not recorded:
            await self._in_db(record_fetched, source.sha256, size, write=True)

    async def _downloader(self, config: RemoteConfig) -> Downloader:
        async with self._lock:
            entry = self._downloaders.get(config)
            if entry is None:
                downloader = Downloader(config, self.runtime.settings, self.runtime.storage)
                entry = self._downloaders[config] = [await downloader.__aenter__(), 0]
                await self._evict()
            self._downloaders.move_to_end(config)
            entry[1] += 1
            return entry[0]

    async def _evict(self) -> None:
        """Close the least recently used idle downloaders beyond the limit (a remote whose
        settings changed leaves its old one behind)."""
        idle = [c for c, (_, users) in self._downloaders.items() if users == 0]
        for config in idle[:max(0, len(self._downloaders) - self.MAX_DOWNLOADERS)]:
            downloader, _ = self._downloaders.pop(config)
            await downloader.__aexit__(None, None, None)

    async def relay(self, source: RemoteSource, chunks: AsyncIterator[bytes], send,
                    headers: list) -> None:
        """Send the fetched bytes. Failing before the first chunk is answered with 502;
        failing later cuts the connection (the response is left incomplete)."""
        async with contextlib.aclosing(chunks):
            try:
                first = await anext(chunks, b"")
            except DigestMismatch as exc:
                await self._failed(source, exc)
                raise Unavailable(502, "the remote sent bytes that failed verification"
                                  ) from None
            except Exception as exc:
                log.warning("fetching %s failed: %s", source.url, exc)
                raise Unavailable(502, "the remote could not deliver the file: "
                                  f"{getattr(exc, 'message', exc)}") from None
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            try:
                await send({"type": "http.response.body", "body": first, "more_body": True})
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
            except DigestMismatch as exc:
                await self._failed(source, exc)
                return  # incomplete: the server cuts the connection before the last byte
            except Exception as exc:
                log.warning("fetching %s failed mid-way: %s", source.url, exc)
                return
        await send({"type": "http.response.body", "body": b""})

    async def _failed(self, source: RemoteSource, exc: Exception) -> None:
        log.warning("%s failed verification (%s); not fetched again for %g s", source.url,
                    getattr(exc, "message", exc), self.runtime.settings.remote_cooldown_seconds)
        await self._in_db(mark_failed, source.remote_artifact_id, write=True)

    async def aclose(self) -> None:
        while self._downloaders:
            _, (downloader, _) = self._downloaders.popitem()
            await downloader.__aexit__(None, None, None)
