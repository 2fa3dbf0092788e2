"""Content-set algebra: the pure part of versioning, with no database in sight.

A repository version is a set of content identities (hex sha256 strings, see
`pallet.content.identity`). This module says how a change applies to such a set, how two sets
differ, how per-type counts carry forward, and how the set's digest is kept.

The digest is LtHash16 (Bellare–Micciancio's additive hash, as specified by Lewi et al.,
"Securing Update Propagation with Homomorphic Hashing", 2019): each element expands by
SHAKE-128 to 1024 lanes of 16 bits, and a set's state is the lane-wise sum modulo 2**16.
Adding an element adds its vector, removing subtracts it, so a new version's digest costs
O(changes) and is equal, on any server, for equal sets. The published content digest is the
sha256 of the 2048-byte state. See docs/developers.md for the exact definition.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

LANES = 1024
STATE_BYTES = LANES * 2
_DOMAIN = b"pallet-lthash16-v1\x00"
_BATCH = 4096


def element_vector_bytes(identity: str) -> bytes:
    """The 2048-byte expansion of one element (its identity digest, as hex text)."""
    return hashlib.shake_128(_DOMAIN + identity.encode("ascii")).digest(STATE_BYTES)


def _sum_vectors(identities: Iterable[str]) -> np.ndarray:
    """Lane-wise sum, as uint64 so nothing wraps until the final reduction."""
    total = np.zeros(LANES, dtype=np.uint64)
    batch: list[bytes] = []
    for identity in identities:
        batch.append(element_vector_bytes(identity))
        if len(batch) == _BATCH:
            total += _lanes(batch)
            batch.clear()
    if batch:
        total += _lanes(batch)
    return total


def _lanes(vectors: list[bytes]) -> np.ndarray:
    matrix = np.frombuffer(b"".join(vectors), dtype="<u2").reshape(len(vectors), LANES)
    return matrix.sum(axis=0, dtype=np.uint64)


class LtHash:
    """A set's homomorphic hash state. Mutable; `state` gives the bytes to store."""

    __slots__ = ("_lanes",)

    def __init__(self, state: bytes | None = None) -> None:
        if state is None:
            self._lanes = np.zeros(LANES, dtype=np.uint16)
        else:
            if len(state) != STATE_BYTES:
                raise ValueError(f"LtHash state must be {STATE_BYTES} bytes, not {len(state)}")
            self._lanes = np.frombuffer(state, dtype="<u2").astype(np.uint16)

    def add(self, identities: Iterable[str]) -> "LtHash":
        summed = (_sum_vectors(identities) % 65536).astype(np.uint16)
        self._lanes = self._lanes + summed  # uint16 arithmetic wraps modulo 2**16
        return self

    def remove(self, identities: Iterable[str]) -> "LtHash":
        summed = (_sum_vectors(identities) % 65536).astype(np.uint16)
        self._lanes = self._lanes - summed
        return self

    @property
    def state(self) -> bytes:
        return self._lanes.astype("<u2").tobytes()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.state).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LtHash) and self.state == other.state


def digest_of(identities: Iterable[str]) -> str:
    """The content digest of a whole set, computed from scratch."""
    return LtHash().add(identities).digest


EMPTY_STATE = LtHash().state
EMPTY_DIGEST = LtHash().digest


@dataclass(frozen=True)
class Change:
    """What a modification really does to a version: units that enter and units that leave."""

    added: frozenset[int] = field(default_factory=frozenset)
    removed: frozenset[int] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def plan_change(present: Iterable[int], add: Iterable[int], remove: Iterable[int]) -> Change:
    """Apply `(current - remove) | add`, knowing which of the touched units are `present`.

    `present` need only cover the units in `add` and `remove`: a change is worked out from the
    units it touches, never from the whole version. A unit both removed and added stays.
    """
    present, add, remove = set(present), set(add), set(remove)
    return Change(added=frozenset(add - present),
                  removed=frozenset((remove & present) - add))


def diff(old: Iterable, new: Iterable) -> tuple[set, set]:
    """Units added and removed going from `old` to `new`."""
    old, new = set(old), set(new)
    return new - old, old - new


def carry_counts(previous: Mapping[str, Mapping[str, int]], added: Mapping[str, int],
                 removed: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """Per-type counts of a new version from its predecessor's and its own changes."""
    counts: dict[str, dict[str, int]] = {}
    for type_ in sorted(set(previous) | set(added) | set(removed)):
        present = previous.get(type_, {}).get("present", 0) + added.get(type_, 0) \
            - removed.get(type_, 0)
        if present < 0:
            raise ValueError(f"count of {type_!r} would become negative")
        if present or added.get(type_) or removed.get(type_):
            counts[type_] = {"added": added.get(type_, 0), "removed": removed.get(type_, 0),
                             "present": present}
    return counts


def key_losers(candidates: Iterable[tuple[str, tuple, int]]) -> set[int]:
    """One unit per repository key: of the candidates `(key, rank, unit)` that share a key,
    the highest rank stays and every other unit is returned, to leave (or not enter)."""
    best: dict[str, tuple[tuple, int]] = {}
    losers: set[int] = set()
    for key, rank, unit in candidates:
        held = best.get(key)
        if held is None or rank > held[0]:
            if held is not None:
                losers.add(held[1])
            best[key] = (rank, unit)
        else:
            losers.add(unit)
    return losers
