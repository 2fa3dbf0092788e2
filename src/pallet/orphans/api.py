"""Routes of orphans: cleanup and reclaim, each queued as a task."""

from __future__ import annotations

from fastapi import APIRouter

from pallet.api.deps import RuntimeDep, Writer, dispatch
from pallet.orphans import tasks
from pallet.orphans.schemas import OrphanCleanup, OrphanReclaim
from pallet.orphans.service import LOCK
from pallet.repositories.service import get_repository, lock_name
from pallet.tasks.schemas import TaskRead

router = APIRouter(tags=["orphans"])
ACCEPTED = {202: {"model": TaskRead, "description": "Queued as a task."}}


@router.post("/orphans/cleanup", status_code=202, response_model=TaskRead, responses=ACCEPTED)
def cleanup(runtime: RuntimeDep, principal: Writer, body: OrphanCleanup | None = None):
    """Delete content in no repository version and artifacts nothing references, when older
    than the protection time. Runs alone: syncs and upload commits wait for it."""
    protection = body.protection_seconds if body is not None else None
    if protection is None:
        protection = runtime.settings.orphan_protection_seconds
    return dispatch(runtime, principal, tasks.cleanup, exclusive=[LOCK],
                    protection_seconds=protection)


@router.post("/orphans/reclaim", status_code=202, response_model=TaskRead, responses=ACCEPTED)
def reclaim(body: OrphanReclaim, runtime: RuntimeDep, principal: Writer):
    """Drop the stored bytes of the repositories' content that only old versions hold and
    that a remote can deliver again; it is fetched on demand if asked for later."""
    names = list(dict.fromkeys(body.repositories))
    with runtime.db.read() as session:
        repositories = [get_repository(session, name) for name in names]
    return dispatch(runtime, principal, tasks.reclaim, exclusive=[LOCK],
                    shared=[lock_name(repository) for repository in repositories],
                    repository_ids=[repository.id for repository in repositories],
                    keep_latest=body.keep_latest)
