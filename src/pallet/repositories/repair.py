"""Repair: re-hash the artifacts of a version and report the missing and corrupt ones."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pallet.artifacts.storage import ArtifactStorage
from pallet.content.models import ContentArtifact
from pallet.repositories.models import Repository, RepositoryContent
from pallet.repositories.versions import Progress, get_version, present_at

REPORT_LIMIT = 1000  # missing or corrupt artifacts listed in a report


def check_artifacts(session: Session, storage: ArtifactStorage, repository: Repository,
                    number: int, progress: Progress) -> dict[str, Any]:
    """Stream the version's files in digest order (so a shared artifact is hashed once)."""
    get_version(session, repository, number)
    rc = RepositoryContent
    query = (select(ContentArtifact.sha256, ContentArtifact.relative_path,
                    ContentArtifact.artifact_id)
             .join(rc, rc.content_id == ContentArtifact.content_id)
             .where(rc.repository_id == repository.id, present_at(rc, number))
             .order_by(ContentArtifact.sha256)
             .execution_options(yield_per=5000))
    report: dict[str, Any] = {"version": number, "checked": 0, "missing": 0, "corrupt": 0,
                              "not_downloaded": 0, "missing_artifacts": [],
                              "corrupt_artifacts": []}
    previous = None
    for sha256, relative_path, artifact_id in session.execute(query):
        report["checked"] += 1
        if report["checked"] % 200 == 0:
            progress("checking artifacts", report["checked"], None)
        if artifact_id is None:
            report["not_downloaded"] += 1
            continue
        if sha256 == previous:
            continue
        previous = sha256
        problem = _problem(storage, sha256)
        if problem:
            report[problem] += 1
            listing = report[f"{problem}_artifacts"]
            if len(listing) < REPORT_LIMIT:
                listing.append({"sha256": sha256, "relative_path": relative_path})
    progress("checking artifacts", report["checked"], report["checked"])
    return report


def _problem(storage: ArtifactStorage, sha256: str) -> str | None:
    if not storage.exists(sha256):
        return "missing"
    if storage.hash_stored(sha256) != sha256:
        return "corrupt"
    return None
