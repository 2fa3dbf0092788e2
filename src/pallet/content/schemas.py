from __future__ import annotations

from typing import Any

from pydantic import Field

from pallet.api.schemas import Schema, UtcDatetime
from pallet.content.models import Content


class ContentArtifactRead(Schema):
    relative_path: str
    sha256: str
    artifact: int | None


class ContentRead(Schema):
    id: int
    href: str
    type: str
    digest: str
    fields: dict[str, Any]
    artifacts: list[ContentArtifactRead]
    created_at: UtcDatetime


def content_read(content: Content) -> ContentRead:
    return ContentRead(id=content.id, href=f"/api/v1/content/{content.id}", type=content.type,
                       digest=content.digest, fields=content.data,
                       artifacts=[ContentArtifactRead(relative_path=a.relative_path,
                                                      sha256=a.sha256, artifact=a.artifact_id)
                                  for a in content.artifacts],
                       created_at=content.created_at)


class ReferenceRead(Schema):
    type: str = Field(description="The content type named.")
    fields: dict[str, str] = Field(description="Its field values: the whole repository key "
                                   "(exact), or leading fields of an index (e.g. a name).")
    exact: bool = Field(description="Names one definite unit; checked when versions are made.")
