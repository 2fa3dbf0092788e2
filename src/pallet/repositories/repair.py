"""Repair: re-hash the artifacts of a version, report the missing and corrupt ones, and bring
back from the remotes that offer them what they can deliver again (verified).

Corrupt bytes are deleted before they are fetched again, so whatever happens next they are
never served as the artifact: a file whose bytes no remote delivers stays missing, which
the content app answers with an error, every later repair reports, and an `immediate` sync
fetches again. Memory grows with the number of problems found (about 100 bytes each), not
with the size of the version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pallet.artifacts.storage import ArtifactStorage
from pallet.content.models import ContentArtifact
from pallet.remotes import fetch
from pallet.repositories.models import Repository, RepositoryContent
from pallet.repositories.versions import Progress, duplicate_keys, get_version, present_at
from pallet.runtime import Runtime

REPORT_LIMIT = 1000  # missing, corrupt, restored or broken artifacts listed in a report
MISSING, CORRUPT = "missing", "corrupt"


@dataclass(frozen=True)
class Problem:
    sha256: str
    relative_path: str
    size: int | None
    kind: str  # MISSING or CORRUPT

    def listed(self, **more: Any) -> dict[str, Any]:
        return {"sha256": self.sha256, "relative_path": self.relative_path, **more}


def check_artifacts(session: Session, storage: ArtifactStorage, repository: Repository,
                    number: int, progress: Progress,
                    problems: list[Problem] | None = None) -> dict[str, Any]:
    """Stream the version's files in digest order (so a shared artifact is hashed once);
    the report, and every problem appended to `problems`."""
    get_version(session, repository, number)
    rc = RepositoryContent
    query = (select(ContentArtifact.sha256, ContentArtifact.relative_path,
                    ContentArtifact.size, ContentArtifact.artifact_id)
             .join(rc, rc.content_id == ContentArtifact.content_id)
             .where(rc.repository_id == repository.id, present_at(rc, number))
             .order_by(ContentArtifact.sha256)
             .execution_options(yield_per=5000))
    report: dict[str, Any] = {"version": number, "checked": 0, "missing": 0, "corrupt": 0,
                              "not_downloaded": 0, "missing_artifacts": [],
                              "corrupt_artifacts": []}
    previous = None
    for sha256, relative_path, size, artifact_id in session.execute(query):
        report["checked"] += 1
        if report["checked"] % 200 == 0:
            progress("checking artifacts", report["checked"], None)
        if artifact_id is None:
            report["not_downloaded"] += 1
            continue
        if sha256 == previous:
            continue
        previous = sha256
        kind = _problem(storage, sha256)
        if kind:
            report[kind] += 1
            problem = Problem(sha256, relative_path, size, kind)
            _list(report[f"{kind}_artifacts"], problem.listed())
            if problems is not None:
                problems.append(problem)
    progress("checking artifacts", report["checked"], report["checked"])
    return report


def _problem(storage: ArtifactStorage, sha256: str) -> str | None:
    if not storage.exists(sha256):
        return MISSING
    try:
        if storage.hash_stored(sha256) != sha256:
            return CORRUPT
    except FileNotFoundError:  # deleted since
        return MISSING
    return None


def _list(listing: list, entry: dict[str, Any]) -> None:
    if len(listing) < REPORT_LIMIT:
        listing.append(entry)


def repair(runtime: Runtime, repository_id: int, number: int, progress: Progress, *,
           report_only: bool = False) -> dict[str, Any]:
    """Check a version; unless `report_only`, fetch its missing and corrupt artifacts again.
    The report says what was restored and what stays broken (and why)."""
    problems: list[Problem] = []
    with runtime.db.read() as session:
        repository = session.get(Repository, repository_id)
        report = check_artifacts(session, runtime.storage, repository, number, progress,
                                 problems)
        report["duplicate_keys"] = duplicate_keys(session, runtime.plugins, repository, number)
    report.update(report_only=report_only, restored=0, restored_artifacts=[],
                  broken=0, broken_artifacts=[])
    if report_only:
        for problem in problems:
            report["broken"] += 1
            _list(report["broken_artifacts"], problem.listed(problem=problem.kind,
                                                             reason=None))
        return report
    if problems:
        restore(runtime, problems, report, progress)
    return report


def restore(runtime: Runtime, problems: list[Problem], report: dict[str, Any],
            progress: Progress) -> None:
    """Fetch the problems' bytes again from the remotes offering them, in batches."""
    storage = runtime.storage
    with fetch.Fetcher(runtime, total=len(problems), progress=progress) as fetcher:
        for start in range(0, len(problems), fetch.BATCH):
            batch = problems[start:start + fetch.BATCH]
            for problem in batch:
                if problem.kind == CORRUPT:
                    _discard(storage, problem.sha256)
            fetched = fetcher.fetch([fetch.Wanted(p.sha256, p.size) for p in batch])
            for problem in batch:
                if problem.sha256 in fetched.stored:
                    report["restored"] += 1
                    _list(report["restored_artifacts"], problem.listed(problem=problem.kind))
                else:
                    report["broken"] += 1
                    _list(report["broken_artifacts"], problem.listed(
                        problem=problem.kind, reason=fetched.failed.get(problem.sha256)))


def _discard(storage: ArtifactStorage, sha256: str) -> None:
    """Delete corrupt bytes (hashed once more: another repair may have restored them since),
    so that the good ones can take their place, and nothing serves the bad ones."""
    try:
        if storage.hash_stored(sha256) == sha256:
            return
    except FileNotFoundError:
        return
    storage.delete(sha256)
