"""Tasks of repositories: each takes the repository's lock and owns its transaction."""

from __future__ import annotations

from sqlalchemy import select

from pallet.content.models import ContentArtifact
from pallet.errors import NotFound
from pallet.repositories import service, versions
from pallet.repositories.models import Repository, RepositoryContent
from pallet.runtime import Runtime
from pallet.tasks.registry import task_function

REPORT_LIMIT = 1000  # missing or corrupt artifacts listed in a repair report


def version_href(repository: Repository, number: int) -> str:
    return f"/api/v1/repositories/{repository.name}/versions/{number}"


def _repository(session, repository_id: int) -> Repository:
    repository = session.get(Repository, repository_id)
    if repository is None:
        raise NotFound("the repository was deleted before the task ran",
                       details={"repository_id": repository_id})
    return repository


@task_function("repository.modify")
def modify(runtime: Runtime, task, *, repository_id: int, add_content: list[int] = (),
           remove_content: list[int] = (), remove_all: bool = False,
           base_version: int | None = None) -> None:
    """Add and remove units, making one new version (or none if nothing changes)."""
    with runtime.db.write() as session:
        repository = _repository(session, repository_id)
        version = versions.create_version(
            session, runtime.plugins, repository, add=add_content, remove=remove_content,
            remove_all=remove_all, base_version=base_version, progress=task.progress)
        task.check_canceled()  # the last chance to stop before the version becomes visible
        if version is not None:
            task.created(version_href(repository, version.number))
            task.result = {"version": version.number, "digest": version.digest}
        else:
            task.result = {"version": None}


@task_function("repository.delete")
def delete_repository(runtime: Runtime, task, *, repository_id: int) -> None:
    with runtime.db.write() as session:
        service.delete_repository(session, _repository(session, repository_id))


@task_function("repository.delete_version")
def delete_version(runtime: Runtime, task, *, repository_id: int, number: int) -> None:
    with runtime.db.write() as session:
        versions.delete_version(session, _repository(session, repository_id), number)


@task_function("repository.repair")
def repair(runtime: Runtime, task, *, repository_id: int, number: int) -> None:
    """Re-hash every artifact of a version; report the missing and the corrupt ones."""
    with runtime.db.read() as session:
        repository = _repository(session, repository_id)
        versions.get_version(session, repository, number)
        rc = RepositoryContent
        query = (select(ContentArtifact.sha256, ContentArtifact.relative_path,
                        ContentArtifact.artifact_id)
                 .join(rc, rc.content_id == ContentArtifact.content_id)
                 .where(rc.repository_id == repository.id, versions.present_at(rc, number))
                 .order_by(ContentArtifact.sha256)  # so a shared artifact is checked once
                 .execution_options(yield_per=5000))
        checked, previous = 0, None
        missing: list[dict] = []
        corrupt: list[dict] = []
        counts = {"missing": 0, "corrupt": 0, "not_downloaded": 0}
        for sha256, relative_path, artifact_id in session.execute(query):
            checked += 1
            if artifact_id is None:
                counts["not_downloaded"] += 1
                continue
            if sha256 == previous:
                continue
            previous = sha256
            problem = None
            if not runtime.storage.exists(sha256):
                problem, listing = "missing", missing
            elif runtime.storage.hash_stored(sha256) != sha256:
                problem, listing = "corrupt", corrupt
            if problem:
                counts[problem] += 1
                if len(listing) < REPORT_LIMIT:
                    listing.append({"sha256": sha256, "relative_path": relative_path})
            if checked % 200 == 0:
                task.progress("checking artifacts", checked, None)
        task.progress("checking artifacts", checked, checked)
    task.result = {"version": number, "checked": checked, **counts,
                   "missing_artifacts": missing, "corrupt_artifacts": corrupt}
