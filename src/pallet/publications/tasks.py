"""Tasks of publications. Publishing holds a shared lock on the repository: no version
appears or disappears meanwhile, and several publications of it can be made at once."""

from __future__ import annotations

from typing import Any

from pallet.errors import NotFound
from pallet.publications import service
from pallet.publications.schemas import publication_href
from pallet.repositories import versions
from pallet.repositories.models import Repository, RepositoryVersion
from pallet.runtime import Runtime
from pallet.tasks.registry import task_function


@task_function("publication.create")
def create(runtime: Runtime, task, *, repository_id: int, version: int | None = None,
           options: dict[str, Any] | None = None) -> None:
    """Publish a version (default: the newest), or find its existing publication with the
    same options. The metadata is written before the write transaction, which stays short."""
    with runtime.db.read() as session:
        repository = session.get(Repository, repository_id)
        if repository is None:
            raise NotFound("the repository was deleted before the task ran",
                           details={"repository_id": repository_id})
        target = (versions.latest_version(session, repository) if version is None
                  else versions.get_version(session, repository, version))
        parsed = service.validate_options(runtime.plugins, repository, options)
        publication = service.find_publication(session, target, parsed)
        if publication is None:
            files = service.render(session, runtime.plugins, runtime.storage, repository,
                                   target, parsed, progress=task.progress)
    if publication is None:
        task.check_canceled()
        with runtime.db.write() as session:
            # Fresh rows in this transaction (the lock keeps them from going away).
            repository = session.get(Repository, repository_id)
            target = session.get(RepositoryVersion, target.id)
            publication, created = service.record_publication(
                session, runtime.plugins, repository, target, parsed, files)
    else:
        created = False
    if created:
        task.created(publication_href(publication.id))
    task.result = {"publication": publication.id, "href": publication_href(publication.id),
                   "repository": repository.name, "version": target.number,
                   "created": created}
