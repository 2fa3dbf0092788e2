from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from pallet.api.schemas import Body, Schema, UtcDatetime
from sqlalchemy import select

from pallet.tasks.models import FINISHED, Task, TaskGroup


class LockRead(Schema):
    resource: str
    exclusive: bool


class ProgressRead(Schema):
    stage: str
    done: int
    total: int | None


class TaskRead(Schema):
    id: int
    href: str
    name: str
    state: str
    group: int | None
    worker: str | None
    created_by: str | None
    cancel_requested: bool
    locks: list[LockRead]
    progress: list[ProgressRead]
    error: dict[str, Any] | None
    created_resources: list[str]
    result: dict[str, Any] | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None


def task_read(task: Task) -> TaskRead:
    return TaskRead(id=task.id, href=f"/api/v1/tasks/{task.id}", name=task.name,
                    state=task.state, group=task.group_id, worker=task.worker,
                    created_by=task.created_by, cancel_requested=task.cancel_requested,
                    locks=[LockRead(resource=l.resource, exclusive=l.exclusive)
                           for l in task.locks],
                    progress=task.progress or [], error=task.error,
                    created_resources=task.created_resources or [], result=task.result,
                    created_at=task.created_at, started_at=task.started_at,
                    finished_at=task.finished_at)


class TaskGroupRead(Schema):
    id: int
    href: str
    description: str
    created_at: UtcDatetime
    states: dict[str, int]
    tasks: list[str]


def group_read(session, group: TaskGroup) -> TaskGroupRead:
    rows = session.execute(select(Task.id, Task.state).where(Task.group_id == group.id)
                           .order_by(Task.id)).all()
    states: dict[str, int] = {}
    for _, state in rows:
        states[state] = states.get(state, 0) + 1
    return TaskGroupRead(id=group.id, href=f"/api/v1/task-groups/{group.id}",
                         description=group.description, created_at=group.created_at,
                         states=states, tasks=[f"/api/v1/tasks/{i}" for i, _ in rows])


class TaskPurge(Body):
    older_than_days: float = Field(30, ge=0, le=36_500,
                                   description="Purge tasks finished this long ago.")
    states: list[str] = Field(default_factory=lambda: list(FINISHED))

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self.older_than_days)


class WorkerRead(Schema):
    name: str
    started_at: UtcDatetime
    heartbeat_at: UtcDatetime
