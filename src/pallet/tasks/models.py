from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pallet.db.base import AUTOINCREMENT, Base, BigId, utcnow

WAITING, RUNNING, COMPLETED, FAILED, CANCELED = "waiting", "running", "completed", "failed", "canceled"
UNFINISHED = (WAITING, RUNNING)
FINISHED = (COMPLETED, FAILED, CANCELED)


class TaskGroup(Base):
    __tablename__ = "task_group"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Task(Base):
    """One unit of background work. Its id orders the queue: first in, first out."""

    __tablename__ = "task"
    __table_args__ = (Index("ix_task_state_id", "state", "id"),
                      AUTOINCREMENT)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default=WAITING)
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("task_group.id", ondelete="SET NULL"),
                                                 index=True)
    worker: Mapped[str | None] = mapped_column(String(255), index=True)
    # Only this worker may run it: a task fed by the request that queued it (a stream).
    bound_to: Mapped[str | None] = mapped_column(String(255))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_resources: Mapped[list[str]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    locks: Mapped[list["TaskLock"]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class TaskLock(Base):
    """A resource a task holds while it waits or runs: exclusive, or shared with other sharers."""

    __tablename__ = "task_lock"

    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"),
                                         primary_key=True)
    resource: Mapped[str] = mapped_column(String(512), primary_key=True)
    exclusive: Mapped[bool] = mapped_column(Boolean)


class Worker(Base):
    __tablename__ = "worker"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class DispatchLock(Base):
    """A single row that workers lock while they decide which task starts next."""

    __tablename__ = "task_dispatch_lock"

    id: Mapped[int] = mapped_column(primary_key=True)


class TaskSchedule(Base):
    """A task queued again every `every_seconds`, with these arguments and locks; a run is
    skipped while the one before it is unfinished."""

    __tablename__ = "task_schedule"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)  # who owns it: "upstream:3"
    task_name: Mapped[str] = mapped_column(String(128))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    exclusive: Mapped[list[str]] = mapped_column(JSON, default=list)
    shared: Mapped[list[str]] = mapped_column(JSON, default=list)
    every_seconds: Mapped[int] = mapped_column(Integer)
    next_run_at: Mapped[datetime] = mapped_column(index=True)
    last_task_id: Mapped[int | None] = mapped_column(BigInteger)  # tasks get purged: no key
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
