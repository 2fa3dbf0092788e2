"""Bounded caches of the content app.

Look-ups (distribution by base path, what a distribution serves, what a path is) live in
`ServingCache`, which forgets everything at once when what is served changes. Each drop
starts a new era: an answer computed from the database before a drop is not stored after it,
so a look-up racing a change cannot bring stale data back. Small files' bytes live in
`BytesCache`, keyed by digest: they can never become stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable

MISS = object()

DISTRIBUTIONS, TARGETS, PATHS = "distributions", "targets", "paths"


class _Lru:
    """An OrderedDict bounded by entry count and by a total cost (such as bytes)."""

    def __init__(self, max_entries: int, max_cost: int | None = None) -> None:
        self.items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.max_entries, self.max_cost, self.cost = max_entries, max_cost, 0

    def get(self, key: Hashable) -> Any:
        item = self.items.get(key)
        if item is None:
            return MISS
        self.items.move_to_end(key)
        return item[0]

    def put(self, key: Hashable, value: Any, cost: int) -> None:
        old = self.items.pop(key, None)
        if old is not None:
            self.cost -= old[1]
        self.items[key] = (value, cost)
        self.cost += cost
        while self.items and (len(self.items) > self.max_entries
                              or (self.max_cost is not None and self.cost > self.max_cost)):
            _, (_, dropped) = self.items.popitem(last=False)
            self.cost -= dropped

    def pop(self, key: Hashable) -> None:
        old = self.items.pop(key, None)
        if old is not None:
            self.cost -= old[1]

    def clear(self) -> None:
        self.items.clear()
        self.cost = 0


class ServingCache:
    """The look-up caches, shared by the event loop and the database threads."""

    def __init__(self, *, max_paths: int = 100_000, max_path_bytes: int = 64 << 20,
                 max_distributions: int = 10_000) -> None:
        """Paths are bounded in number and in (approximate) bytes: listings are large."""
        self._lock = threading.Lock()
        self._caches = {DISTRIBUTIONS: _Lru(max_distributions),
                        TARGETS: _Lru(max_distributions),
                        PATHS: _Lru(max_paths, max_path_bytes)}
        self.era = 0

    def get(self, kind: str, key: Hashable) -> Any:
        with self._lock:
            return self._caches[kind].get(key)

    def put(self, kind: str, era: int, key: Hashable, value: Any, cost: int = 1) -> None:
        """Remember `value` unless the cache was dropped since `era` was read."""
        with self._lock:
            if era == self.era:
                self._caches[kind].put(key, value, cost)

    def forget(self, kind: str, key: Hashable) -> None:
        with self._lock:
            self._caches[kind].pop(key)

    def drop(self) -> None:
        with self._lock:
            self.era += 1
            for cache in self._caches.values():
                cache.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(cache.items) for cache in self._caches.values())


class BytesCache:
    """Small files' bytes by sha256, bounded in total size. Used from the event loop only."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self._lru = _Lru(max_entries=1 << 20, max_cost=max_bytes)

    def get(self, sha256: str) -> bytes | None:
        value = self._lru.get(sha256)
        return None if value is MISS else value

    def put(self, sha256: str, data: bytes) -> None:
        self._lru.put(sha256, data, len(data))
