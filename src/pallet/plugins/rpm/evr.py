"""RPM's version order: `vercmp` compares two version (or release) strings as rpm's
rpmvercmp does, and `EVR` orders epoch, version and release as rpm orders packages.

rpmvercmp reads a string as segments: a run of ASCII digits or a run of ASCII letters;
anything else separates them and is otherwise ignored. Segments compare in turn: two
numbers by value (leading zeros dropped), two letter runs by byte order, and a number is
newer than letters. When one string runs out first, the other is newer -- except for two
markers: `~` sorts before everything, even the end of the string (1.0~rc1 < 1.0), and `^`
sorts after the end of the string but before anything else (1.0 < 1.0^git1 < 1.0.1).
Tested against the `rpm` command itself (tests/test_remote_options.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import total_ordering

_DIGITS = frozenset("0123456789")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ALNUM = _DIGITS | _LETTERS
_MARKERS = frozenset("~^")


def vercmp(a: str, b: str) -> int:
    """-1, 0 or 1 as version `a` is older than, equal to or newer than `b`."""
    if a == b:
        return 0
    i = j = 0
    while i < len(a) or j < len(b):
        i, j = _skip_separators(a, i), _skip_separators(b, j)
        x = a[i] if i < len(a) else ""  # "" once a string has ended
        y = b[j] if j < len(b) else ""
        if "~" in (x, y):
            if x != y:
                return -1 if x == "~" else 1
            i, j = i + 1, j + 1
            continue
        if "^" in (x, y):
            if x == y:
                i, j = i + 1, j + 1
                continue
            if not x or not y:  # the end of one string is older than a caret
                return -1 if not x else 1
            return -1 if x == "^" else 1  # a caret is older than any segment
        if not x or not y:
            break
        kind = _DIGITS if x in _DIGITS else _LETTERS
        end_a, end_b = _run(a, i, kind), _run(b, j, kind)
        if end_b == j:  # b's segment is of the other kind: numbers are newer than letters
            return 1 if kind is _DIGITS else -1
        order = _compare_segments(a[i:end_a], b[j:end_b], numeric=kind is _DIGITS)
        if order:
            return order
        i, j = end_a, end_b
    if i >= len(a) and j >= len(b):
        return 0  # equal but for separators (1.0 and 1_0)
    return -1 if i >= len(a) else 1


def _skip_separators(text: str, at: int) -> int:
    while at < len(text) and text[at] not in _ALNUM and text[at] not in _MARKERS:
        at += 1
    return at


def _run(text: str, at: int, kind: frozenset[str]) -> int:
    while at < len(text) and text[at] in kind:
        at += 1
    return at


def _compare_segments(x: str, y: str, *, numeric: bool) -> int:
    if numeric:
        x, y = x.lstrip("0"), y.lstrip("0")
        if len(x) != len(y):  # the longer number is the larger
            return -1 if len(x) < len(y) else 1
    return (x > y) - (x < y)


@total_ordering
@dataclass(frozen=True, eq=False)
class EVR:
    """An epoch, version and release, ordered as rpm orders packages: the epoch as a
    number (none is 0), then the version, then the release, each by `vercmp`. Equal means
    equal in that order (1.0 and 1.00 are), not equal text."""

    epoch: str
    version: str
    release: str

    def compare(self, other: EVR) -> int:
        mine, theirs = int(self.epoch or 0), int(other.epoch or 0)
        if mine != theirs:
            return -1 if mine < theirs else 1
        return vercmp(self.version, other.version) or vercmp(self.release, other.release)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EVR) and self.compare(other) == 0

    def __lt__(self, other: EVR) -> bool:
        return self.compare(other) < 0

    __hash__ = None  # equal values need not have equal text: not a dictionary key

    def __str__(self) -> str:
        epoch = "" if (self.epoch or "0") == "0" else f"{self.epoch}:"
        return f"{epoch}{self.version}-{self.release}"
