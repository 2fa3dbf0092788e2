"""Tasks of orphans: cleanup and reclaim, each batch in its own short write transaction."""

from __future__ import annotations

from functools import partial
from typing import Callable

from sqlalchemy.orm import Session

from pallet.db.base import utcnow
from pallet.db.bulk import batch_size
from pallet.errors import NotFound
from pallet.orphans import service
from pallet.orphans.service import Doomed
from pallet.repositories.models import Repository
from pallet.runtime import Runtime
from pallet.tasks.registry import task_function

Count = Callable[[Session], int]
Find = Callable[..., list[int]]  # (session, *, after, limit)
Handle = Callable[[Session, list[int]], tuple[int, list[Doomed]]]


@task_function("orphans.cleanup")
def cleanup(runtime: Runtime, task, *, protection_seconds: float) -> None:
    """Delete content in no version, then artifacts nothing references, both created more
    than `protection_seconds` ago."""
    before = service.cutoff(utcnow(), protection_seconds)

    def delete_content(session: Session, ids: list[int]) -> tuple[int, list[Doomed]]:
        return service.delete_content(session, ids, before=before), []

    def delete_artifacts(session: Session, ids: list[int]) -> tuple[int, list[Doomed]]:
        doomed = service.delete_artifacts(session, ids, before=before)
        return len(doomed), doomed

    content, _, _ = _drain(runtime, task, "deleting orphan content",
                           partial(service.count_orphan_content, before=before),
                           partial(service.find_orphan_content, before=before),
                           delete_content)
    artifacts, _, freed = _drain(runtime, task, "deleting orphan artifacts",
                                 partial(service.count_orphan_artifacts, before=before),
                                 partial(service.find_orphan_artifacts, before=before),
                                 delete_artifacts)
    task.result = {"content_deleted": content, "artifacts_deleted": artifacts,
                   "bytes_freed": freed}


@task_function("orphans.reclaim")
def reclaim(runtime: Runtime, task, *, repository_ids: list[int], keep_latest: bool = True
            ) -> None:
    """Drop the stored bytes of the repositories' content that no newest or served version
    holds and that a remote can deliver again."""
    grace = runtime.settings.publication_grace_seconds
    with runtime.db.read() as session:
        for repository_id in repository_ids:
            if session.get(Repository, repository_id) is None:
                raise NotFound("a repository was deleted before the task ran",
                               details={"repository_id": repository_id})

    def find(session: Session, *, after: int, limit: int) -> list[int]:
        served = service.served_versions(session, now=utcnow(), grace=grace)
        return service.find_reclaimable(session, repository_ids=repository_ids,
                                        keep_latest=keep_latest, served=served, after=after,
                                        limit=limit)

    def handle(session: Session, ids: list[int]) -> tuple[int, list[Doomed]]:
        # Served versions are read again inside the write transaction: they may have moved.
        served = service.served_versions(session, now=utcnow(), grace=grace)
        return service.reclaim_content(session, ids, repository_ids=repository_ids,
                                       keep_latest=keep_latest, served=served)

    units, artifacts, freed = _drain(runtime, task, "reclaiming space", None, find, handle)
    task.result = {"content_reclaimed": units, "artifacts_deleted": artifacts,
                   "bytes_freed": freed}


def _drain(runtime: Runtime, task, stage: str, count: Count | None, find: Find,
           handle: Handle) -> tuple[int, int, int]:
    """Find candidates a batch at a time (read transactions), handle each batch in its own
    write transaction, then delete the files of the artifacts it deleted. Returns (handled,
    artifacts deleted, bytes freed). Progress counts the candidates examined."""
    with runtime.db.read() as session:
        limit = batch_size(session)
        total = count(session) if count is not None else None
    handled = artifacts = freed = examined = after = 0
    task.progress(stage, 0, total)
    while True:
        with runtime.db.read() as session:
            ids = find(session, after=after, limit=limit)
        if not ids:
            break
        after = ids[-1]
        with runtime.db.write() as session:
            done, doomed = handle(session, ids)
        if doomed:
            with runtime.db.write() as session:
                freed += service.delete_files(session, runtime.storage, doomed)
        handled += done
        artifacts += len(doomed)
        examined += len(ids)
        # A cancel stops here, between batches: each finished batch stays done.
        task.progress(stage, examined, None if total is None else max(total, examined))
    task.progress(stage, examined, examined)
    return handled, artifacts, freed
