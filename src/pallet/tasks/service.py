"""Queueing, reading, cancelling and purging tasks. Functions over an explicit session."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from pallet.db.base import utcnow
from pallet.errors import Conflict, NotFound
from pallet.tasks.locks import make_locks
from pallet.tasks.models import (CANCELED, FAILED, FINISHED, RUNNING, UNFINISHED, WAITING,
                                 Task, TaskGroup, TaskLock, Worker)


def enqueue(session: Session, fn: Callable | str, *, exclusive: list[str] | tuple = (),
            shared: list[str] | tuple = (), group_id: int | None = None,
            created_by: str | None = None, bound_to: str | None = None,
            **kwargs: Any) -> Task:
    """Queue `fn(runtime, task, **kwargs)` to run once its locks allow; with `bound_to`,
    only that worker may run it."""
    name = fn if isinstance(fn, str) else fn.task_name
    task = Task(name=name, state=WAITING, args=kwargs, group_id=group_id,
                created_by=created_by, progress=[], created_resources=[], bound_to=bound_to)
    task.locks = [TaskLock(resource=lock.resource, exclusive=lock.exclusive)
                  for lock in make_locks(exclusive, shared)]
    session.add(task)
    session.flush()
    return task


def create_group(session: Session, description: str = "") -> TaskGroup:
    group = TaskGroup(description=description)
    session.add(group)
    session.flush()
    return group


def get_task(session: Session, task_id: int) -> Task:
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"there is no task {task_id}", details={"task": task_id})
    return task


def get_group(session: Session, group_id: int) -> TaskGroup:
    group = session.get(TaskGroup, group_id)
    if group is None:
        raise NotFound(f"there is no task group {group_id}", details={"group": group_id})
    return group


def cancel_task(session: Session, task_id: int) -> Task:
    """Cancel a waiting task at once; ask a running one to stop at its next progress report."""
    task = get_task(session, task_id)
    # Conditional updates: a worker may claim the task between our read and our write.
    waiting = (update(Task).where(Task.id == task_id, Task.state == WAITING)
               .values(state=CANCELED, finished_at=utcnow()))
    running = (update(Task).where(Task.id == task_id, Task.state == RUNNING)
               .values(cancel_requested=True))
    changed = session.execute(waiting).rowcount or session.execute(running).rowcount
    session.refresh(task)
    if not changed:
        raise Conflict(f"task {task_id} has already finished ({task.state})",
                       details={"task": task_id, "state": task.state})
    return task


def cancel_group(session: Session, group_id: int) -> list[Task]:
    get_group(session, group_id)
    tasks = session.scalars(select(Task).where(Task.group_id == group_id,
                                               Task.state.in_(UNFINISHED))).all()
    return [cancel_task(session, task.id) for task in tasks]


def purge_tasks(session: Session, *, finished_before: datetime,
                states: tuple[str, ...] = FINISHED) -> int:
    """Delete finished tasks older than `finished_before`; return how many went."""
    states = tuple(s for s in states if s in FINISHED)
    ids = select(Task.id).where(Task.state.in_(states), Task.finished_at < finished_before)
    session.execute(delete(TaskLock).where(TaskLock.task_id.in_(ids)))
    result = session.execute(delete(Task).where(Task.state.in_(states),
                                                Task.finished_at < finished_before))
    session.execute(delete(TaskGroup).where(~TaskGroup.id.in_(
        select(Task.group_id).where(Task.group_id.is_not(None)))))
    return result.rowcount or 0


def fail_lost_tasks(session: Session, dead_workers: list[str], message: str) -> int:
    """Fail running tasks of dead workers, and of workers no longer registered at all."""
    error = {"code": "worker_lost", "message": message, "details": {}}
    result = session.execute(
        update(Task).where(Task.state == RUNNING,
                           Task.worker.in_(dead_workers) | Task.worker.not_in(select(Worker.name)))
        .values(state=FAILED, finished_at=utcnow(), error=error))
    # A task bound to a worker that is gone would wait, and block its resources, forever.
    bound = session.execute(
        update(Task).where(Task.state == WAITING, Task.bound_to.is_not(None),
                           Task.bound_to.in_(dead_workers)
                           | Task.bound_to.not_in(select(Worker.name)))
        .values(state=FAILED, finished_at=utcnow(), error=error))
    return (result.rowcount or 0) + (bound.rowcount or 0)
