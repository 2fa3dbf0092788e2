"""Tasks of remotes: syncing a repository from one, and deleting one."""

from __future__ import annotations

from pallet.errors import NotFound
from pallet.remotes import service
from pallet.remotes.models import Remote
from pallet.remotes.sync import sync_repository
from pallet.runtime import Runtime
from pallet.tasks.registry import task_function


@task_function("remote.sync")
def sync(runtime: Runtime, task, *, repository_id: int, remote_id: int,
         mirror: bool | None = None) -> None:
    """Sync a repository from a remote: a new version, or none when nothing changed."""
    sync_repository(runtime, task, repository_id=repository_id, remote_id=remote_id,
                    mirror=mirror)


@task_function("remote.delete")
def delete_remote(runtime: Runtime, task, *, remote_id: int) -> None:
    with runtime.db.write() as session:
        remote = session.get(Remote, remote_id)
        if remote is None:
            raise NotFound("the remote was deleted before the task ran",
                           details={"remote_id": remote_id})
        service.delete_remote(session, remote)
