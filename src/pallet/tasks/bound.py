"""Tasks fed by the request that queued them, run by that request's own thread.

A streamed import reads its archive from the request body: no other process could run it.
It is still a task — queued with its locks, started in queue order when they allow, with
progress, cancel and a recorded end — but bound to a worker that this request registers for
the duration. If the process dies, its worker stops beating: the reaper then fails the task,
waiting or running, and its locks are free again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import Any, Callable

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from pallet.db.base import utcnow
from pallet.runtime import Runtime
from pallet.tasks import queue, service
from pallet.tasks.models import CANCELED, RUNNING, WAITING, Task, Worker
from pallet.tasks.worker import REPORT_SECONDS, TaskContext, run_task

log = logging.getLogger(__name__)


def run_bound(runtime: Runtime, fn: Callable | str, *, exclusive: list[str] = (),
              shared: list[str] = (), created_by: str | None = None,
              before_run: Callable[[int], None] = lambda task_id: None,
              **kwargs: Any) -> int:
    """Queue `fn` bound to a worker of this thread, wait for its locks, run it here, and
    return the task's id once it has ended (its state says how)."""
    name = f"request@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    with runtime.db.write() as session:
        session.add(Worker(name=name))
    stop = threading.Event()
    context: TaskContext | None = None
    try:
        with runtime.db.write() as session:
            task_id = service.enqueue(session, fn, exclusive=exclusive, shared=shared,
                                      created_by=created_by, bound_to=name, **kwargs).id
        context = TaskContext(task_id)
        beat = threading.Thread(target=_report, args=(runtime, name, context, stop),
                                name=f"bound-{task_id}", daemon=True)
        beat.start()
        while queue.claim_next(runtime.db, name, only=task_id) is None:
            with runtime.db.read() as session:
                state = session.scalar(select(Task.state).where(Task.id == task_id))
            if state != WAITING:  # canceled, or failed by a reaper, while it waited
                return task_id
            if stop.wait(runtime.settings.task_poll_seconds):
                break
        before_run(task_id)
        run_task(runtime, name, task_id, context)
        return task_id
    finally:
        stop.set()
        with runtime.db.write() as session:
            session.execute(delete(Worker).where(Worker.name == name))


def _report(runtime: Runtime, name: str, context: TaskContext, stop: threading.Event) -> None:
    """The bound worker's heartbeat, progress and cancel requests, as a pool's reporter does."""
    beats_every = max(1, round(runtime.settings.worker_heartbeat_seconds / REPORT_SECONDS))
    tick = 0
    while not stop.wait(REPORT_SECONDS):
        try:
            with runtime.db.write() as session:
                if tick % beats_every == 0:
                    session.execute(update(Worker).where(Worker.name == name)
                                    .values(heartbeat_at=utcnow()))
                state, cancel = session.execute(
                    select(Task.state, Task.cancel_requested)
                    .where(Task.id == context.id)).one()
                if cancel or state == CANCELED:
                    context.canceled.set()
                if state == RUNNING:
                    session.execute(update(Task).where(Task.id == context.id,
                                                       Task.state == RUNNING)
                                    .values(progress=context.snapshot()))
        except SQLAlchemyError:  # a missed beat is retried on the next tick
            log.warning("a bound task's reporter could not write", exc_info=True)
        tick += 1
