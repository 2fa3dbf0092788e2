"""Artifact records: found by id or digest, recorded once their bytes are verified."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pallet.artifacts.models import Artifact
from pallet.db.base import utcnow
from pallet.errors import NotFound


def record_artifact(session: Session, *, sha256: str, size: int) -> Artifact:
    """The artifact row for verified stored bytes, created if it is new. An existing row's
    `created_at` restarts: bytes brought again are as new to orphan cleanup's protection."""
    artifact = session.scalar(select(Artifact).where(Artifact.sha256 == sha256))
    if artifact is not None:
        artifact.created_at = utcnow()
        return artifact
    try:
        with session.begin_nested():
            artifact = Artifact(sha256=sha256, size=size)
            session.add(artifact)
    except IntegrityError:  # recorded concurrently by another transaction
        artifact = session.scalar(select(Artifact).where(Artifact.sha256 == sha256))
    return artifact


def get_artifact(session: Session, artifact_id: int) -> Artifact:
    artifact = session.get(Artifact, artifact_id)
    if artifact is None:
        raise NotFound(f"there is no artifact {artifact_id}", details={"artifact": artifact_id})
    return artifact


def list_artifacts(session: Session, *, sha256: str | None = None, limit: int = 100,
                   offset: int = 0) -> tuple[int, list[Artifact]]:
    query = select(Artifact)
    if sha256:
        query = query.where(Artifact.sha256 == sha256.lower())
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    return count, list(session.scalars(query.order_by(Artifact.id).limit(limit).offset(offset)))
