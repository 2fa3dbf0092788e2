"""The whole lock-conflict model, as pure functions.

A task holds each of its resources exclusively or shared. Two locks conflict when they name
the same resource and at least one is exclusive. A waiting task may start when no running
task, and no task queued before it that is still waiting, holds a conflicting lock: so
conflicting tasks never overlap, and they start in the order they were queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Lock:
    resource: str
    exclusive: bool


@dataclass(frozen=True)
class QueuedTask:
    id: int
    running: bool
    locks: tuple[Lock, ...]


def conflicts(a: Lock, b: Lock) -> bool:
    return a.resource == b.resource and (a.exclusive or b.exclusive)


def make_locks(exclusive: Iterable[str] = (), shared: Iterable[str] = ()) -> tuple[Lock, ...]:
    """Locks for a task; a resource named both ways is held exclusively."""
    exclusive = set(exclusive)
    return tuple(sorted({Lock(r, True) for r in exclusive}
                        | {Lock(r, False) for r in set(shared) - exclusive},
                        key=lambda lock: lock.resource))


def runnable(tasks: Sequence[QueuedTask]) -> list[int]:
    """Ids of the waiting tasks that may start now, in queue order."""
    exclusive_held: set[str] = set()
    shared_held: set[str] = set()
    for task in tasks:
        if task.running:
            _hold(task, exclusive_held, shared_held)
    ready: list[int] = []
    for task in sorted((t for t in tasks if not t.running), key=lambda t: t.id):
        blocked = any(lock.resource in exclusive_held
                      or (lock.exclusive and lock.resource in shared_held)
                      for lock in task.locks)
        if not blocked:
            ready.append(task.id)
        # Started or not, it now stands in front of every later task.
        _hold(task, exclusive_held, shared_held)
    return ready


def _hold(task: QueuedTask, exclusive_held: set[str], shared_held: set[str]) -> None:
    for lock in task.locks:
        (exclusive_held if lock.exclusive else shared_held).add(lock.resource)
