"""Tasks of repositories: each takes the repository's lock and owns its transaction."""

from __future__ import annotations

from pallet.errors import NotFound
from pallet.publications.service import autopublish
from pallet.repositories import copy as copying, service, versions
from pallet.repositories.models import Repository
from pallet.repositories import repair as repairing
from pallet.runtime import Runtime
from pallet.tasks.registry import task_function


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
           base_version: int | None = None, references: str = "report") -> None:
    """Add and remove units, making one new version (or none if nothing changes)."""
    with runtime.db.write() as session:
        task.result = make_version(runtime, task, session, repository_id, add=add_content,
                                   remove=remove_content, remove_all=remove_all,
                                   base_version=base_version, references=references)


def make_version(runtime: Runtime, task, session, repository_id: int, **changes) -> dict:
    """A new version of the repository with `changes` (as `versions.create_version` takes
    them), auto-published, in the caller's transaction; the task's result."""
    repository = _repository(session, repository_id)
    version = versions.create_version(session, runtime.plugins, repository,
                                      progress=task.progress, **changes)
    publication = autopublish(session, runtime.plugins, runtime.storage, repository, version)
    task.check_canceled()  # the last chance to stop before the version becomes visible
    return version_result(task, repository, version, publication)


def version_result(task, repository: Repository, version, publication) -> dict:
    """A task's result (and created resources) after it made a version, or none."""
    if version is None:
        return {"version": None}
    task.created(version_href(repository, version.number))
    result = {"version": version.number, "digest": version.digest}
    if version.broken_references:
        result["broken_references"] = version.broken_references
    if publication is not None:
        task.created(f"/api/v1/publications/{publication.id}")
        result["publication"] = publication.id
    return result


@task_function("repository.copy")
def copy(runtime: Runtime, task, *, repository_id: int, source_id: int,
         source_version: int | None = None, content: list[int] = (),
         match: list[dict] = (), references: bool = True, dependencies: bool = False) -> None:
    """Copy units of a version of another repository (chosen by id or by fields, with the
    units they reference and, if asked, their dependencies) into a new version."""
    with runtime.db.write() as session:
        source = _repository(session, source_id)
        number = (versions.latest_version(session, source).number if source_version is None
                  else versions.get_version(session, source, source_version).number)
        task.progress("selecting", 0, None)
        selection = copying.select_units(session, runtime.plugins, source, number,
                                         content=content, match=match, references=references)
        if dependencies:
            task.progress("solving dependencies", 0, None)
            copying.add_dependencies(session, runtime.plugins, source, number,
                                     _repository(session, repository_id), selection,
                                     references=references)
        task.progress("selecting", len(selection.units), len(selection.units))
        result = make_version(runtime, task, session, repository_id, add=selection.units)
        task.result = {**result, "source": source.name, "source_version": number,
                       **selection.summary()}


@task_function("repository.delete")
def delete_repository(runtime: Runtime, task, *, repository_id: int) -> None:
    with runtime.db.write() as session:
        service.delete_repository(session, _repository(session, repository_id))


@task_function("repository.delete_version")
def delete_version(runtime: Runtime, task, *, repository_id: int, number: int) -> None:
    with runtime.db.write() as session:
        versions.delete_version(session, _repository(session, repository_id), number)


@task_function("repository.repair")
def repair(runtime: Runtime, task, *, repository_id: int, number: int,
           report_only: bool = False) -> None:
    """Re-hash every artifact of a version; fetch the missing and corrupt ones again from
    their remotes (unless `report_only`); report what was restored and what stays broken."""
    with runtime.db.read() as session:
        _repository(session, repository_id)
    task.result = repairing.repair(runtime, repository_id, number, task.progress,
                                   report_only=report_only)
