"""Choosing the next task. Workers share nothing but the database.

The choice is serialized: on PostgreSQL a worker takes the single dispatch row with
`SELECT … FOR UPDATE SKIP LOCKED` (a worker that finds it taken simply tries again on its next
poll); on SQLite the write transaction itself (`BEGIN IMMEDIATE`) is the serialization. Inside,
`locks.runnable` decides, and the task is marked running in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import select, update

from pallet.db import Database
from pallet.db.base import utcnow
from pallet.tasks.locks import Lock, QueuedTask, runnable
from pallet.tasks.models import RUNNING, UNFINISHED, WAITING, DispatchLock, Task, TaskLock


def has_waiting(db: Database) -> bool:
    with db.read() as session:
        return session.scalar(select(Task.id).where(Task.state == WAITING).limit(1)) is not None


def claim_next(db: Database, worker: str, only: int | None = None) -> int | None:
    """Mark the first runnable task as running by `worker` and return its id (with `only`,
    that task or none). A task bound to another worker is left to it."""
    if not has_waiting(db):
        return None
    with db.write() as session:
        if not db.is_sqlite:
            held = session.scalar(select(DispatchLock.id).where(DispatchLock.id == 1)
                                  .with_for_update(skip_locked=True))
            if held is None:
                return None
        rows = session.execute(
            select(Task.id, Task.state, TaskLock.resource, TaskLock.exclusive)
            .outerjoin(TaskLock, TaskLock.task_id == Task.id)
            .where(Task.state.in_(UNFINISHED)).order_by(Task.id)).all()
        for task_id in runnable(_queued(rows)):
            if only is not None and task_id != only:
                continue
            claimed = session.execute(
                update(Task).where(Task.id == task_id, Task.state == WAITING,
                                   Task.bound_to.is_(None) | (Task.bound_to == worker))
                .values(state=RUNNING, worker=worker, started_at=utcnow())).rowcount
            if claimed:
                return task_id
        return None


def _queued(rows) -> list[QueuedTask]:
    tasks: dict[int, tuple[bool, list[Lock]]] = {}
    for task_id, state, resource, exclusive in rows:
        running, locks = tasks.setdefault(task_id, (state == RUNNING, []))
        if resource is not None:
            locks.append(Lock(resource, exclusive))
    return [QueuedTask(task_id, running, tuple(locks))
            for task_id, (running, locks) in tasks.items()]
