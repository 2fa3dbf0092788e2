"""Routes of remotes (addressed by name) and of syncing a repository from one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pallet.api.deps import Reader, RuntimeDep, Writer, dispatch
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.remotes import service, tasks
from pallet.remotes.schemas import (RemoteCreate, RemoteRead, RemoteUpdate, SyncRequest,
                                    remote_read)
from pallet.orphans.service import LOCK as ORPHANS_LOCK
from pallet.remotes.sync import check_sync, sync_remote
from pallet.repositories.service import get_repository, lock_name
from pallet.tasks.schemas import TaskRead

router = APIRouter(tags=["remotes"])
ACCEPTED = {202: {"model": TaskRead, "description": "Queued as a task."}}


@router.get("/remotes", response_model=Page[RemoteRead])
def list_remotes(request: Request, runtime: RuntimeDep, _: Reader, paging: Paging,
                 name: str | None = None, name_contains: str | None = None,
                 type: str | None = None):
    with runtime.db.read() as session:
        count, items = service.list_remotes(session, name=name, name_contains=name_contains,
                                            type=type, limit=paging.limit, offset=paging.offset)
        return page(request, paging, count, items, remote_read)


@router.post("/remotes", status_code=201, response_model=RemoteRead)
def create_remote(body: RemoteCreate, runtime: RuntimeDep, _: Writer):
    with runtime.db.write() as session:
        remote = service.create_remote(session, runtime.plugins, runtime.settings,
                                       **body.model_dump())
        return remote_read(remote)


@router.get("/remotes/{name}", response_model=RemoteRead)
def show_remote(name: str, runtime: RuntimeDep, _: Reader):
    with runtime.db.read() as session:
        return remote_read(service.get_remote(session, name))


@router.patch("/remotes/{name}", response_model=RemoteRead)
def update_remote(name: str, body: RemoteUpdate, runtime: RuntimeDep, _: Writer):
    with runtime.db.write() as session:
        remote = service.get_remote(session, name)
        service.update_remote(session, runtime.plugins, runtime.settings, remote,
                              **body.model_dump(exclude_unset=True))
        return remote_read(remote)


@router.delete("/remotes/{name}", status_code=202, response_model=TaskRead, responses=ACCEPTED)
def delete_remote(name: str, runtime: RuntimeDep, principal: Writer) -> JSONResponse:
    """Deleting waits for running syncs from the remote (they share its lock)."""
    with runtime.db.read() as session:
        remote = service.get_remote(session, name)
    return dispatch(runtime, principal, tasks.delete_remote,
                    exclusive=[service.lock_name(remote)], remote_id=remote.id)


@router.post("/repositories/{name}/sync", status_code=202, response_model=TaskRead,
             responses=ACCEPTED, tags=["repositories"])
def sync_repository(name: str, runtime: RuntimeDep, principal: Writer,
                    body: SyncRequest | None = None) -> JSONResponse:
    """Sync from a remote (default: the repository's own): one task that makes a new
    version, or none when nothing changed."""
    body = body or SyncRequest()
    with runtime.db.read() as session:
        repository = get_repository(session, name)
        remote = sync_remote(session, repository, body.remote)
        check_sync(runtime.plugins, runtime.settings, repository, remote)
    return dispatch(runtime, principal, tasks.sync,
                    exclusive=[lock_name(repository)],
                    shared=[service.lock_name(remote), ORPHANS_LOCK],
                    repository_id=repository.id, remote_id=remote.id, mirror=body.mirror)
