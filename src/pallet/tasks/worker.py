"""Workers: threads that claim tasks and run them, and one reporter thread per process.

The reporter writes progress and heartbeats, passes cancel requests on to running tasks, and
fails the tasks of workers (of any process) whose heartbeat stopped, which frees their locks;
it also queues the scheduled tasks that are due.
The embedded server runs a pool of these in-process; `pallet worker` runs one on its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from pallet.db.base import utcnow
from pallet.errors import Canceled, PalletError, out_of_space
from pallet.runtime import Runtime
from pallet.tasks import queue, registry, schedules, service
from pallet.tasks.cancel import CancelEvent, running
from pallet.tasks.models import CANCELED, COMPLETED, FAILED, RUNNING, Task, Worker

log = logging.getLogger(__name__)

REPORT_SECONDS = 0.5
SCHEDULE_TICKS = 2  # due schedules are queued within this many reports


class TaskContext:
    """What a running task uses to report progress and created resources, and to see cancel."""

    def __init__(self, task_id: int) -> None:
        self.id = task_id
        self.created_resources: list[str] = []
        self.result: dict[str, Any] | None = None
        self.canceled = CancelEvent()  # setting it also wakes the task's network waits
        self._stages: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def progress(self, stage: str, done: int = 0, total: int | None = None) -> None:
        """Report a stage's progress; raises Canceled if someone asked the task to stop."""
        with self._lock:
            self._stages[stage] = {"stage": stage, "done": done, "total": total}
        self.check_canceled()

    def created(self, href: str) -> None:
        self.created_resources.append(href)

    def check_canceled(self) -> None:
        if self.canceled.is_set():
            raise Canceled("the task was canceled")

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(stage) for stage in self._stages.values()]


def run_task(runtime: Runtime, worker: str, task_id: int, context: TaskContext) -> str:
    """Run one claimed task and record how it ended. Returns the final state."""
    with runtime.db.read() as session:
        task = session.get(Task, task_id)
        name, args = task.name, dict(task.args)
    try:
        with running(context.canceled):
            registry.lookup(name)(runtime, context, **args)
        state, error = COMPLETED, None
    except (Exception, asyncio.CancelledError) as exc:
        state, error = _ended(task_id, name, exc, context.canceled.is_set())
    with runtime.db.write() as session:
        session.execute(
            update(Task).where(Task.id == task_id, Task.state == RUNNING, Task.worker == worker)
            .values(state=state, finished_at=utcnow(), error=error,
                    progress=context.snapshot(), created_resources=context.created_resources,
                    result=context.result))
    return state


def _ended(task_id: int, name: str, exc: BaseException, canceled: bool
           ) -> tuple[str, dict[str, Any] | None]:
    """The state and error of a task that raised `exc`. After a cancel, whatever broke
    (a socket shut down, a coroutine cancelled) broke because the task was stopped."""
    if canceled or isinstance(exc, Canceled):
        return CANCELED, None
    if isinstance(exc, PalletError):
        log.info("task %s (%s) failed: %s", task_id, name, exc.message)
        return FAILED, exc.as_dict()
    # A bug: the traceback goes to the log, a sentence to the user.
    log.error("task %s (%s) failed unexpectedly", task_id, name, exc_info=exc)
    full = out_of_space(exc) if isinstance(exc, Exception) else None
    if full is not None:  # not a bug: the disk is full
        return FAILED, full.as_dict()
    return FAILED, {"code": "internal", "details": {},
                    "message": "the task failed unexpectedly; the server log has the details"}


class WorkerPool:
    """`count` worker threads and their reporter, in this process."""

    def __init__(self, runtime: Runtime, count: int, *, label: str = "worker") -> None:
        self.runtime = runtime
        # The random part keeps a restarted process (same host, same pid) from taking over
        # the name, and so the running tasks, of the one before it.
        prefix = f"{label}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.names = [f"{prefix}/{i}" for i in range(count)]
        self._stop = threading.Event()
        self._running: dict[int, TaskContext] = {}
        self._running_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        registry.load_task_modules()
        self._register()
        for name in self.names:
            thread = threading.Thread(target=self._work, args=(name,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        reporter = threading.Thread(target=self._report, name="task-reporter", daemon=True)
        reporter.start()
        self._threads.append(reporter)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, cancel running tasks, and leave the worker table."""
        self._stop.set()
        self.runtime.wakeup.set()
        with self._running_lock:
            for context in self._running.values():
                context.canceled.set()
        for thread in self._threads:
            thread.join(timeout)
        try:
            with self.runtime.db.write() as session:
                session.execute(delete(Worker).where(Worker.name.in_(self.names)))
        except SQLAlchemyError:
            log.warning("could not unregister workers on stop", exc_info=True)

    # -- worker threads -------------------------------------------------------------------

    def _work(self, name: str) -> None:
        poll = self.runtime.settings.task_poll_seconds
        while not self._stop.is_set():
            try:
                task_id = queue.claim_next(self.runtime.db, name)
            except Exception:  # a worker thread must outlive any error
                log.warning("could not look for work", exc_info=True)
                task_id = None
            if task_id is None:
                if self.runtime.wakeup.wait(poll):
                    self.runtime.wakeup.clear()
                continue
            context = TaskContext(task_id)
            with self._running_lock:
                self._running[task_id] = context
            try:
                run_task(self.runtime, name, task_id, context)
            except Exception:  # its end could not be recorded: the reaper will fail it
                log.exception("could not record the end of task %s", task_id)
            finally:
                with self._running_lock:
                    self._running.pop(task_id, None)

    # -- reporter -------------------------------------------------------------------------

    def _register(self) -> None:
        with self.runtime.db.write() as session:
            session.execute(delete(Worker).where(Worker.name.in_(self.names)))
            session.add_all(Worker(name=name) for name in self.names)

    def _report(self) -> None:
        settings = self.runtime.settings
        beats_every = max(1, round(settings.worker_heartbeat_seconds / REPORT_SECONDS))
        tick = 0
        while not self._stop.wait(REPORT_SECONDS):
            try:
                self._flush_progress()
                if tick % beats_every == 0:
                    self._heartbeat()
                    reap_dead_workers(self.runtime)
                if tick % SCHEDULE_TICKS == 0 and schedules.queue_due(self.runtime.db):
                    self.runtime.wakeup.set()
            except SQLAlchemyError:
                log.warning("task reporter could not write", exc_info=True)
            tick += 1

    def _flush_progress(self) -> None:
        with self._running_lock:
            running = dict(self._running)
        if not running:
            return
        # Read first (never blocked by a writer on SQLite): stop tasks someone asked to cancel,
        # and tasks no longer ours (failed by a reaper while this process stalled).
        with self.runtime.db.read() as session:
            rows = session.execute(select(Task.id, Task.state, Task.worker,
                                          Task.cancel_requested)
                                   .where(Task.id.in_(running))).all()
        for task_id, state, worker, cancel_requested in rows:
            if cancel_requested or state != RUNNING or worker not in self.names:
                running[task_id].canceled.set()
        with self.runtime.db.write() as session:
            for task_id, context in running.items():
                session.execute(update(Task).where(Task.id == task_id, Task.state == RUNNING)
                                .values(progress=context.snapshot()))

    def _heartbeat(self) -> None:
        with self.runtime.db.write() as session:
            now = utcnow()
            seen = session.execute(update(Worker).where(Worker.name.in_(self.names))
                                   .values(heartbeat_at=now)).rowcount
            if seen != len(self.names):  # reaped while we were stalled: come back
                session.execute(delete(Worker).where(Worker.name.in_(self.names)))
                session.add_all(Worker(name=name, heartbeat_at=now) for name in self.names)


def reap_dead_workers(runtime: Runtime) -> list[str]:
    """Fail the running tasks of workers silent for longer than the timeout (and of workers
    that are gone), freeing their locks; forget the dead workers. Hosts' clocks must agree."""
    limit = utcnow() - timedelta(seconds=runtime.settings.worker_timeout_seconds)
    with runtime.db.write() as session:
        dead = list(session.scalars(select(Worker.name).where(Worker.heartbeat_at < limit)))
        failed = service.fail_lost_tasks(
            session, dead, "the worker running this task stopped responding; it was failed "
                           "and its locks released")
        session.execute(delete(Worker).where(Worker.name.in_(dead)))
    if dead or failed:
        log.warning("workers %s stopped responding; %d task(s) failed",
                    ", ".join(dead) or "(unregistered)", failed)
    return dead
