"""Wire shapes of publications."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pallet.api.schemas import Body, Id, Schema, UtcDatetime


class PublicationCreate(Body):
    repository: str = Field(description="The repository's name.")
    version: Id | None = Field(None, description="The version to publish; default: the "
                                                 "newest when the task runs.")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="The repository type's publish options.")


class MetadataFileRead(Schema):
    relative_path: str
    sha256: str
    size: int


class PublicationRead(Schema):
    id: int
    href: str
    repository: str
    repository_href: str
    version: int
    version_href: str
    type: str
    options: dict[str, Any]
    pass_through: bool = Field(description="The version's content is served at its own "
                                           "relative paths beside the metadata files.")
    metadata_files: list[MetadataFileRead]
    created_at: UtcDatetime


def publication_href(publication_id: int) -> str:
    return f"/api/v1/publications/{publication_id}"
