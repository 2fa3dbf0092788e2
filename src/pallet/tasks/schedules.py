"""Tasks that run on a schedule: each worker process's reporter queues the ones that are due.

The first run is one period after the schedule is made (or its period changed): whoever
makes one usually runs the task by hand too. A schedule is claimed by moving its next run on,
guarded by the time it had, so however many processes look, each run is queued once; and a
run is skipped while the previous one, or any task holding its exclusive resources (a run
queued by hand), is still waiting or running: two never run at once, and a slow
replication never piles up behind itself.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from pallet.db.base import utcnow
from pallet.db.engine import Database
from pallet.tasks.models import UNFINISHED, Task, TaskLock, TaskSchedule
from pallet.tasks.service import enqueue


def set_schedule(session: Session, name: str, fn: Callable | str, every_seconds: int | None,
                 *, exclusive: list[str] | tuple = (), shared: list[str] | tuple = (),
                 **kwargs: Any) -> TaskSchedule | None:
    """Run `fn(**kwargs)` every `every_seconds`, first one period from now; None removes the
    schedule."""
    schedule = session.scalar(select(TaskSchedule).where(TaskSchedule.name == name))
    if every_seconds is None:
        if schedule is not None:
            session.delete(schedule)
        return None
    first_run = utcnow() + timedelta(seconds=every_seconds)
    if schedule is None:
        schedule = TaskSchedule(name=name, next_run_at=first_run)
        session.add(schedule)
    elif schedule.every_seconds != every_seconds:
        schedule.next_run_at = first_run
    schedule.task_name = fn if isinstance(fn, str) else fn.task_name
    schedule.args, schedule.every_seconds = kwargs, every_seconds
    schedule.exclusive, schedule.shared = list(exclusive), list(shared)
    session.flush()
    return schedule


def remove_schedule(session: Session, name: str) -> None:
    session.execute(delete(TaskSchedule).where(TaskSchedule.name == name))


def get_schedule(session: Session, name: str) -> TaskSchedule | None:
    return session.scalar(select(TaskSchedule).where(TaskSchedule.name == name))


def queue_due(db: Database) -> list[int]:
    """Queue every schedule whose time has come; the ids of the tasks queued."""
    queued: list[int] = []
    now = utcnow()
    with db.read() as session:  # most looks find nothing due: no write transaction for them
        if session.scalar(select(TaskSchedule.id).where(TaskSchedule.next_run_at <= now)
                          .limit(1)) is None:
            return queued
    with db.write() as session:
        due = session.scalars(select(TaskSchedule).where(TaskSchedule.next_run_at <= now)).all()
        for schedule in due:
            claimed = session.execute(
                update(TaskSchedule)
                .where(TaskSchedule.id == schedule.id,
                       TaskSchedule.next_run_at == schedule.next_run_at)
                .values(next_run_at=now + timedelta(seconds=schedule.every_seconds))
                .execution_options(synchronize_session=False)).rowcount
            if not claimed:
                continue  # another process took this run
            if _busy(session, schedule):
                continue
            task = enqueue(session, schedule.task_name, exclusive=schedule.exclusive,
                           shared=schedule.shared, created_by=f"schedule {schedule.name}",
                           **schedule.args)
            schedule.last_task_id = task.id
            queued.append(task.id)
    return queued


def _busy(session: Session, schedule: TaskSchedule) -> bool:
    """Whether the schedule's previous run, or another task holding one of its exclusive
    resources, is waiting or running."""
    if schedule.last_task_id is not None and session.scalar(
            select(Task.state).where(Task.id == schedule.last_task_id)) in UNFINISHED:
        return True
    return bool(schedule.exclusive) and session.scalar(
        select(TaskLock.task_id).join(Task, Task.id == TaskLock.task_id)
        .where(TaskLock.resource.in_(schedule.exclusive), TaskLock.exclusive.is_(True),
               Task.state.in_(UNFINISHED)).limit(1)) is not None
