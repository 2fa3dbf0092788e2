"""A compact index of the files one source serves (a publication, or a version served bare),
so that a path a fleet asks for is found in memory, on the event loop, with no query.

A source never changes once made: a publication's files and a version's content are fixed
(only which sources a distribution serves changes, and the serving caches follow that), so an
index never goes stale and needs no invalidation; it is built once, in a database thread,
the first time its source is asked for, while requests meanwhile take the query path.

Each file costs about 65 bytes: a 128-bit digest of its path in two sorted arrays (found by
bisection; a wrong file for a path would need two paths' digests to collide), its sha256 as
32 bytes, its size, whether it is generated metadata or content, and the content artifact a
file whose bytes are not stored yet is fetched by. A file of the index is exactly what the
query path finds at that path; anything else (folders, generated files, missing paths) is
left to the query path, whose answers the path cache keeps.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import threading
from array import array
from collections import OrderedDict
from typing import Iterable

from pallet.contentapp.lookup import RemoteOnly, Source, StoredFile

log = logging.getLogger(__name__)

METADATA, STORED, REMOTE = 0, 1, 2
BYTES_PER_FILE = 65
MAX_INDEX_BYTES = 256 << 20  # all indexes of a process together, the least used dropped


def path_key(path: str) -> tuple[int, int]:
    digest = hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big")


class PathIndex:
    """The files of one source, by path."""

    __slots__ = ("high", "low", "digests", "sizes", "kinds", "content_artifacts")

    def __init__(self, files: Iterable[tuple[str, str, int | None, bool | None, int]]
                 ) -> None:
        """`files` as `Catalog.files` gives them: (path, sha256, size, stored: True, False
        or None for metadata, content artifact id), a path given twice being the later."""
        high, low, digests = array("Q"), array("Q"), bytearray()
        sizes, kinds, content_artifacts = array("q"), bytearray(), array("q")
        for path, sha256, size, stored, content_artifact in files:
            first, second = path_key(path)
            high.append(first)
            low.append(second)
            digests += bytes.fromhex(sha256)
            sizes.append(-1 if size is None else size)
            kinds.append(METADATA if stored is None else STORED if stored else REMOTE)
            content_artifacts.append(content_artifact)
        # Stable, by the first half only (a list of ints: the transient cost of the build).
        order = sorted(range(len(high)), key=high.__getitem__)
        self.high = array("Q", (high[i] for i in order))
        self.low = array("Q", (low[i] for i in order))
        self.digests = b"".join(digests[32 * i:32 * i + 32] for i in order)
        self.sizes = array("q", (sizes[i] for i in order))
        self.kinds = bytes(kinds[i] for i in order)
        self.content_artifacts = array("q", (content_artifacts[i] for i in order))

    def __len__(self) -> int:
        return len(self.high)

    @property
    def cost(self) -> int:
        return len(self) * BYTES_PER_FILE

    def find(self, path: str) -> StoredFile | RemoteOnly | None:
        first, second = path_key(path)
        at = bisect.bisect_left(self.high, first)
        found = None
        while at < len(self.high) and self.high[at] == first:
            if self.low[at] == second:
                found = at  # the last of equal paths wins, as it was given
            at += 1
        if found is None:
            return None
        sha256 = self.digests[32 * found:32 * found + 32].hex()
        size, kind = self.sizes[found], self.kinds[found]
        size = None if size < 0 else size
        if kind == REMOTE:
            return RemoteOnly(self.content_artifacts[found], sha256, size)
        return StoredFile(sha256, size, metadata=kind == METADATA)


def source_key(source: Source) -> tuple:
    """What identifies a source's files: its publication, else its version."""
    if source.publication_id is not None:
        return ("publication", source.publication_id, source.pass_through)
    return ("version", source.repository_id, source.version_number)


class IndexCache:
    """The indexes of one process, bounded in bytes, least recently used dropped first.
    Shared by the event loop (look-ups) and the database threads (builds)."""

    def __init__(self, max_bytes: int = MAX_INDEX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._indexes: OrderedDict[tuple, PathIndex] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> PathIndex | None:
        with self._lock:
            index = self._indexes.get(key)
            if index is not None:
                self._indexes.move_to_end(key)
            return index

    def put(self, key: tuple, index: PathIndex) -> None:
        if index.cost > self.max_bytes:
            return
        with self._lock:
            old = self._indexes.pop(key, None)
            if old is not None:
                self._bytes -= old.cost
            self._indexes[key] = index
            self._bytes += index.cost
            while self._bytes > self.max_bytes:
                _, dropped = self._indexes.popitem(last=False)
                self._bytes -= dropped.cost

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._indexes)
