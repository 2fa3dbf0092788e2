from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select

from pallet.api.deps import Reader, RuntimeDep, Writer
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.db.base import utcnow
from pallet.errors import Invalid
from pallet.tasks import service
from pallet.tasks.models import FINISHED, UNFINISHED, Task, Worker
from pallet.tasks.schemas import (TaskGroupRead, TaskPurge, TaskRead, WorkerRead, group_read,
                                  task_read)

router = APIRouter(tags=["tasks"])
STATES = UNFINISHED + FINISHED


@router.get("/tasks", response_model=Page[TaskRead])
def list_tasks(request: Request, runtime: RuntimeDep, _: Reader, paging: Paging,
               state: Annotated[str | None, Query(description="waiting, running, completed, failed or canceled")] = None,
               name: str | None = None, group: int | None = None):
    query = select(Task)
    if state:
        if state not in STATES:
            raise Invalid(f"unknown task state {state!r}", details={"known": list(STATES)})
        query = query.where(Task.state == state)
    if name:
        query = query.where(Task.name == name)
    if group is not None:
        query = query.where(Task.group_id == group)
    with runtime.db.read() as session:
        count = session.scalar(select(func.count()).select_from(query.subquery()))
        items = session.scalars(query.order_by(Task.id.desc())
                                .limit(paging.limit).offset(paging.offset)).all()
        return page(request, paging, count, items, task_read)


@router.get("/tasks/{task_id}", response_model=TaskRead)
def show_task(task_id: int, runtime: RuntimeDep, _: Reader):
    with runtime.db.read() as session:
        return task_read(service.get_task(session, task_id))


@router.post("/tasks/{task_id}/cancel", response_model=TaskRead)
def cancel_task(task_id: int, runtime: RuntimeDep, _: Writer):
    with runtime.db.write() as session:
        return task_read(service.cancel_task(session, task_id))


@router.post("/tasks/purge")
def purge_tasks(body: TaskPurge, runtime: RuntimeDep, _: Writer) -> dict[str, int]:
    unknown = set(body.states) - set(FINISHED)
    if unknown:
        raise Invalid("only finished tasks can be purged", details={"states": list(FINISHED)})
    with runtime.db.write() as session:
        return {"purged": service.purge_tasks(session, finished_before=body.cutoff(utcnow()),
                                              states=tuple(body.states))}


@router.get("/task-groups/{group_id}", response_model=TaskGroupRead)
def show_group(group_id: int, runtime: RuntimeDep, _: Reader):
    with runtime.db.read() as session:
        return group_read(session, service.get_group(session, group_id))


@router.post("/task-groups/{group_id}/cancel", response_model=TaskGroupRead)
def cancel_group(group_id: int, runtime: RuntimeDep, _: Writer):
    with runtime.db.write() as session:
        service.cancel_group(session, group_id)
        return group_read(session, service.get_group(session, group_id))


@router.get("/workers", response_model=list[WorkerRead])
def list_workers(runtime: RuntimeDep, _: Reader):
    with runtime.db.read() as session:
        return [WorkerRead.model_validate(w)
                for w in session.scalars(select(Worker).order_by(Worker.name))]
