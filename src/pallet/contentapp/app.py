"""The content app: a plain ASGI application serving `/pallet/content/<base_path>/<path>`.

No web framework on this path: requests for cached paths answer from memory without
touching the database. Look-ups run in a thread pool (synchronous SQLAlchemy) and are cached
until what is served changes: at once for changes committed in this process
(`runtime.serving_epoch`), and within `content_cache_seconds` for changes made elsewhere (one
tiny query on the ServingGeneration row).

A fleet asks for many distinct paths, more than any path cache holds: once a distribution's
source is known, its files are found in the source's path index (index.py) on the event
loop, with no query and no thread; the query path answers the rest (folders, generated
files, missing paths) and every path until the index is built.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from urllib.parse import quote

from pallet.contentapp import http, listing
from pallet.contentapp.cache import DISTRIBUTIONS, MISS, PATHS, TARGETS, BytesCache
from pallet.contentapp.cache import ServingCache
from pallet.contentapp.index import IndexCache, PathIndex, source_key
from pallet.contentapp.lookup import DIRECTORY, Catalog, Dist, RemoteOnly, Source, StoredFile
from pallet.contentapp.ondemand import RemoteFetcher, Unavailable
from pallet.contentapp.responses import (MISSING, SMALL_FILE, Damaged, FileEntry,
                                         GeneratedEntry, PageEntry, RedirectEntry,
                                         RemoteEntry, read_verified, send_body, send_file,
                                         send_plain, stored_size)
from pallet.runtime import Runtime

log = logging.getLogger(__name__)

PREFIX = "/pallet/content"
MAX_LISTING = 10_000  # entries in one directory listing
MAX_BASE_PATH = 1024
# Up to this many distributions are kept whole in memory, so that finding a path's costs no
# query (beyond it, the base paths a path could have are looked up and cached one by one).
MAX_HELD_DISTRIBUTIONS = 100_000
_EVERY = "*"  # the DISTRIBUTIONS cache's key for all of them
_NO_DIST = object()
_ALLOW = [(b"allow", b"GET, HEAD")]


class ContentApp:
    def __init__(self, runtime: Runtime, *, db_threads: int = 8, io_threads: int = 16) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.catalog = Catalog(runtime.plugins)
        self.cache = ServingCache()
        self.small = BytesCache()
        self.db_pool = ThreadPoolExecutor(db_threads, thread_name_prefix="content-db")
        self.io_pool = ThreadPoolExecutor(io_threads, thread_name_prefix="content-io")
        self.remote = RemoteFetcher(runtime, self.db_pool)
        self._epoch = runtime.serving_epoch
        self._generation: int | None = None
        self._next_check = 0.0
        self._checking: asyncio.Future | None = None
        self._resolving: dict[str, asyncio.Future] = {}
        self.indexes = IndexCache(runtime.settings.content_index_bytes)
        self._indexing: set[tuple] = set()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def aclose(self) -> None:
        await self.remote.aclose()
        self.db_pool.shutdown(wait=False, cancel_futures=True)
        self.io_pool.shutdown(wait=False, cancel_futures=True)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- a request ----------------------------------------------------------------------------

    async def handle(self, scope, receive, send) -> None:
        method = scope["method"]
        head = method == "HEAD"
        path: str = scope["path"]
        if not path.startswith(PREFIX) or (len(path) > len(PREFIX)
                                           and path[len(PREFIX)] != "/"):
            return await send_plain(send, 404, "not found", head=head)
        if method != "GET" and not head:
            return await send_plain(send, 405, f"method {method} is not allowed", _ALLOW)
        if len(path) == len(PREFIX):
            return await self._redirect(send, PREFIX.encode() + b"/")
        relative = path[len(PREFIX) + 1:]
        refusal = _refuse(relative)
        if refusal is not None:
            return await send_plain(send, refusal[0], refusal[1], head=head)
        try:
            if (self.runtime.serving_epoch != self._epoch
                    or time.monotonic() >= self._next_check):
                await self._refresh()
            entry = await self._entry(relative)
        except Exception:
            log.exception("content look-up of %r failed", relative)
            return await send_plain(send, 503, "the content app cannot reach its database",
                                    head=head)
        if type(entry) is FileEntry:
            await self._send_stored(scope, receive, send, entry, head)
        elif type(entry) is PageEntry:
            await send_body(send, 200, entry.headers, b"" if head else entry.body)
        elif type(entry) is RedirectEntry:
            await self._redirect(send, entry.location)
        elif type(entry) is RemoteEntry:
            await self._send_remote(scope, receive, send, entry, head)
        elif type(entry) is GeneratedEntry:
            await self._send_generated(scope, send, entry, head)
        else:
            await send_plain(send, 404, "not found", head=head)

    @staticmethod
    async def _redirect(send, location: bytes) -> None:
        await send_plain(send, 301, "moved", [(b"location", location)])

    # -- freshness ------------------------------------------------------------------------------

    async def _refresh(self) -> None:
        """Drop the caches if what is served changed: at once after a change committed in
        this process, else when the generation row grew (checked at most every
        content_cache_seconds). Concurrent requests share one check."""
        epoch = self.runtime.serving_epoch
        if epoch != self._epoch:
            self._epoch = epoch
            self.cache.drop()
        if self._checking is not None:
            return await asyncio.shield(self._checking)
        self._checking = asyncio.get_running_loop().create_future()
        try:
            generation = await self._in_db(self.catalog.generation)
            if self._generation is not None and generation != self._generation:
                self.cache.drop()
            self._generation = generation
            self._next_check = time.monotonic() + self.settings.content_cache_seconds
        finally:
            self._checking.set_result(None)
            self._checking = None

    async def _in_db(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(
            self.db_pool, partial(self._with_session, function, *args))

    def _with_session(self, function, *args):
        with self.runtime.db.read() as session:
            return function(session, *args)

    # -- resolving a path -------------------------------------------------------------------------

    async def _entry(self, relative: str):
        entry = self.cache.get(PATHS, relative)
        if entry is not MISS and (entry.valid_until is None or entry.valid_until > time.time()):
            return entry
        entry = self._indexed(relative)
        if entry is not None:  # not kept in the path cache: the index is its cache
            return entry
        waiting = self._resolving.get(relative)
        if waiting is not None:  # the same path asked for again while it is looked up
            return await asyncio.shield(waiting)
        future = asyncio.get_running_loop().create_future()
        self._resolving[relative] = future
        try:
            era = self.cache.era
            entry = await self._in_db(self._resolve, relative, era)
            self.cache.put(PATHS, era, relative, entry, entry.cost)
            self._indexed(relative)  # the source is known now: its index gets built
            future.set_result(entry)
            return entry
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._resolving[relative]

    def _indexed(self, relative: str):
        """(On the event loop.) The entry of a file the newest source of its distribution
        serves, from that source's path index; None when only the query path can tell
        (nothing cached yet, no index yet, or not a file of the index)."""
        every = self.cache.get(DISTRIBUTIONS, _EVERY)
        dist = _longest(every, relative) if every is not MISS and every is not None else None
        if dist is None or len(relative) <= len(dist.base_path) + 1:
            return None
        sources = self.cache.get(TARGETS, dist.id)
        if sources is MISS:
            return None
        now = time.time()
        source = next((s for s in sources if s.valid_until is None or s.valid_until > now),
                      None)
        if source is None:
            return None
        index = self.indexes.get(source_key(source))
        if index is None:
            self._build_index(source)
            return None
        sub = relative[len(dist.base_path) + 1:]
        found = index.find(sub) if not sub.endswith("/") else None
        return None if found is None else self._found(None, relative, sub, source, found)

    def _build_index(self, source) -> None:
        """Build `source`'s path index in a database thread; one build at a time, so that
        many distributions asked for at once cannot hold the transient memory of many
        builds together (the next is started by a later request)."""
        key = source_key(source)
        if self._indexing or not self.indexes.wanted(key):
            return
        self._indexing.add(key)

        def built(future: asyncio.Future) -> None:
            self._indexing.discard(key)
            if future.cancelled():
                return
            if future.exception() is not None:
                log.error("building the path index of %s failed: %s", key, future.exception())
                return
            self.indexes.put(key, future.result())

        asyncio.get_running_loop().run_in_executor(
            self.db_pool, partial(self._with_session, self._index_of, source)
        ).add_done_callback(built)

    def _index_of(self, session, source) -> PathIndex:
        return PathIndex(self.catalog.files(session, source))

    def _resolve(self, session, relative: str, era: int):
        """(In a database thread.) The cache entry for `relative`."""
        now = time.time()
        dist = self._distribution(session, relative, era)
        if dist is None:
            return self._distribution_folder(session, relative)
        if len(relative) == len(dist.base_path):
            return RedirectEntry(_location(relative + "/"))
        sub = relative[len(dist.base_path) + 1:]
        sources = self.cache.get(TARGETS, dist.id)
        if sources is MISS:
            sources = self.catalog.target(session, dist, now=now,
                                          grace=self.settings.publication_grace_seconds)
            self.cache.put(TARGETS, era, dist.id, sources)
        current = [s for s in sources if s.valid_until is None or s.valid_until > now]
        for source in current:
            found = self.catalog.find(session, source, sub)
            if found is not None:
                return self._found(session, relative, sub, source, found)
        # After the stored files: publishing refuses a file at a generated path, so only a
        # publication made before its type generated that path can hold one there.
        generated = (self.catalog.generated(session, dist, current[0], sub)
                     if current else None)
        if generated is not None:
            return GeneratedEntry(generated, dist.base_path,
                                  generated.file.media_type.encode("latin-1"),
                                  current[0].valid_until)
        return MISSING

    def _distribution(self, session, relative: str, era: int) -> Dist | None:
        """The distribution whose base path is the longest segment prefix of `relative`."""
        every = self.cache.get(DISTRIBUTIONS, _EVERY)
        if every is MISS:
            every = self.catalog.every_distribution(session, MAX_HELD_DISTRIBUTIONS)
            self.cache.put(DISTRIBUTIONS, era, _EVERY, every)
        if every is not None:
            return _longest(every, relative)
        segments = relative.split("/")
        candidates = []
        for i in range(1, len(segments) + 1):
            candidate = "/".join(segments[:i])
            if not segments[i - 1] or len(candidate) > MAX_BASE_PATH:
                break
            candidates.append(candidate)
        known = {c: self.cache.get(DISTRIBUTIONS, c) for c in candidates}
        unknown = [c for c, value in known.items() if value is MISS]
        if unknown:
            found = self.catalog.distributions(session, unknown)
            for candidate in unknown:
                known[candidate] = found.get(candidate, _NO_DIST)
                self.cache.put(DISTRIBUTIONS, era, candidate, known[candidate])
        for candidate in reversed(candidates):
            if known[candidate] is not _NO_DIST:
                return known[candidate]
        return None

    def _distribution_folder(self, session, relative: str):
        """A path above the distributions: '' lists them; 'a/' lists those under 'a/'."""
        if relative and not relative.endswith("/"):
            below, _ = self.catalog.distribution_children(session, relative + "/", 1)
            return RedirectEntry(_location(relative + "/")) if below else MISSING
        entries, truncated = self.catalog.distribution_children(session, relative, MAX_LISTING)
        if relative and not entries:
            return MISSING
        return PageEntry(listing.render(f"{PREFIX}/{relative}", entries, parent=bool(relative),
                                        truncated=truncated))

    def _found(self, session, relative: str, sub: str, source: Source, found):
        if found == DIRECTORY:
            if sub and not sub.endswith("/"):
                return RedirectEntry(_location(relative + "/"))
            entries, truncated = self.catalog.children(session, source, sub, MAX_LISTING)
            return PageEntry(listing.render(f"{PREFIX}/{relative}", entries, parent=True,
                                            truncated=truncated), source.valid_until)
        name = sub.rsplit("/", 1)[-1]
        # Content behind a repository may be replaced at the same path by its next
        # publication, so only fixed targets promise immutable content.
        immutable = source.fixed and not (isinstance(found, StoredFile) and found.metadata)
        stored = FileEntry.build(
            fs_path=self.runtime.storage.location(found.sha256), sha256=found.sha256,
            size=found.size or 0, name=name, last_modified=source.created_at,
            cache_control=http.IMMUTABLE if immutable else http.SHORT,
            valid_until=source.valid_until)
        if isinstance(found, StoredFile):
            return stored
        assert isinstance(found, RemoteOnly)
        return RemoteEntry(found.content_artifact_id, stored, found.size, source.valid_until)

    # -- sending files --------------------------------------------------------------------------

    async def _send_stored(self, scope, receive, send, entry: FileEntry, head: bool) -> None:
        range_header = if_none_match = if_modified_since = if_range = None
        for name, value in scope["headers"]:
            if name == b"range":
                range_header = value
            elif name == b"if-none-match":
                if_none_match = value
            elif name == b"if-modified-since":
                if_modified_since = value
            elif name == b"if-range":
                if_range = value
        if (if_none_match is not None or if_modified_since is not None) and http.not_modified(
                if_none_match=if_none_match, if_modified_since=if_modified_since,
                tag=entry.tag, last_modified=entry.last_modified):
            return await send_body(send, 304, entry.validators(), b"")
        status, headers, first, length = 200, entry.headers, 0, entry.size
        if range_header is not None and http.range_applies(
                if_range, tag=entry.tag, last_modified=entry.last_modified):
            wanted = http.parse_range(range_header, entry.size)
            if wanted == http.UNSATISFIABLE:
                return await send_plain(send, 416, "the range is not satisfiable",
                                        [(b"content-range", f"bytes */{entry.size}".encode())],
                                        head=head)
            if wanted is not None:
                first, last = wanted
                status, headers, length = 206, entry.partial(first, last), last - first + 1
        if head:
            return await send_body(send, status, headers, b"")
        try:
            if entry.size <= SMALL_FILE:
                data = self.small.get(entry.sha256)
                if data is None:
                    # Read on the event loop, as nginx reads: a small file comes from the
                    # page cache in microseconds, and a thread's round trip cost more than
                    # the read itself (many distinct paths: 6,200 -> N requests/s).
                    data = read_verified(entry.fs_path, entry.sha256, entry.size)
                    self.small.put(entry.sha256, data)
                return await send_body(send, status, headers, data[first:first + length])
            await send_file(scope, receive, send, self.io_pool, entry, status, headers,
                            first, length)
        except FileNotFoundError:
            log.error("artifact %s is recorded but missing from the store", entry.sha256)
            await send_plain(send, 500, "the file's bytes are missing from the artifact "
                             "store; `pallet repository repair` fetches them again")
        except Damaged as exc:
            # Never the wrong bytes under an ETag naming the right ones: an error instead.
            log.error("artifact %s is damaged in the store: %s", entry.sha256, exc)
            await send_plain(send, 500, f"the file's stored bytes are damaged ({exc}); "
                             "`pallet repository repair` fetches them again")

    async def _send_generated(self, scope, send, entry: GeneratedEntry, head: bool) -> None:
        """A generated file, made for the URL this request reached the distribution at."""
        host = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"if-none-match":
                if_none_match = value
        origin = http.request_origin(scope.get("scheme", "http"), host,
                                     self.settings.content_origin)
        if origin is None:
            return await send_plain(send, 400, "this file names the server's URL, and the "
                                    "request's Host header is not a plain host[:port] (an "
                                    "administrator can set PALLET_CONTENT_ORIGIN)", head=head)
        served = replace(entry.generated.served,
                         url=f"{origin}{PREFIX}/{quote(entry.base_path)}/")
        try:
            body = await asyncio.get_running_loop().run_in_executor(
                self.io_pool, entry.generated.file.render, served)
        except Exception:
            log.exception("generating %s of distribution %s failed", scope["path"],
                          served.distribution)
            return await send_plain(send, 500, "generating this file failed", head=head)
        if body is None:
            return await send_plain(send, 404, "not found", head=head)
        tag = http.etag(hashlib.sha256(body).hexdigest())
        headers = [(b"content-length", str(len(body)).encode()),
                   (b"content-type", entry.media_type), (b"etag", tag),
                   (b"cache-control", http.SHORT)]
        if not self.settings.content_origin:  # made from the Host header: caches key it
            headers.append((b"vary", b"Host"))
        if if_none_match is not None and http.etag_matches(if_none_match, tag):
            return await send_body(send, 304, headers[2:], b"")
        await send_body(send, 200, headers, b"" if head else body)

    async def _send_remote(self, scope, receive, send, entry: RemoteEntry, head: bool) -> None:
        """A file not stored yet: from the store if its bytes arrived since, else fetched."""
        stored = entry.stored
        size = await asyncio.get_running_loop().run_in_executor(
            self.io_pool, stored_size, stored.fs_path)
        if size is not None:
            if entry.size is None:  # the database did not know it: the store's says
                stored = stored.resized(size)
            return await self._send_stored(scope, receive, send, stored, head)
        headers = [h for h in stored.headers if h[0] != b"accept-ranges"]
        if entry.size is None:
            headers = headers[1:]  # no Content-Length: sent chunked
        if head:
            return await send_body(send, 200, headers, b"")
        try:
            source, chunks = await self.remote.open(entry.content_artifact_id)
            await self.remote.relay(source, chunks, send, headers)
        except Unavailable as exc:
            await send_plain(send, exc.status, exc.message)


_BAD_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\\]")


def _refuse(relative: str) -> tuple[int, str] | None:
    """Paths no file can have are refused before any look-up: the store is only ever reached
    through digests from the database, this keeps nonsense away from the database too."""
    if _BAD_CHARACTERS.search(relative):
        return 400, "the path holds NUL, control characters or backslashes"
    if relative:
        wrapped = "/" + relative + ("" if relative.endswith("/") else "/")
        if "//" in wrapped or "/./" in wrapped or "/../" in wrapped:
            return 404, "not found"
    return None


def _longest(every: dict, relative: str):
    """The distribution of `every` (by base path) whose base path is the longest segment
    prefix of `relative`, or None."""
    end = len(relative)
    while end > 0:
        candidate = relative[:end]
        if end <= MAX_BASE_PATH and candidate in every:
            return every[candidate]
        end = relative.rfind("/", 0, end)
    return None


def _location(relative: str) -> bytes:
    return (PREFIX + "/" + quote(relative)).encode("ascii")


def create_content_app(runtime: Runtime) -> ContentApp:
    return ContentApp(runtime)
