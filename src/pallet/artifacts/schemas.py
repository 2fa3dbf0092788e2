from __future__ import annotations

from pallet.api.schemas import Schema, UtcDatetime
from pallet.artifacts.models import Artifact


class ArtifactRead(Schema):
    id: int
    href: str
    sha256: str
    size: int
    created_at: UtcDatetime


def artifact_read(artifact: Artifact) -> ArtifactRead:
    return ArtifactRead(id=artifact.id, href=f"/api/v1/artifacts/{artifact.id}",
                        sha256=artifact.sha256, size=artifact.size,
                        created_at=artifact.created_at)
