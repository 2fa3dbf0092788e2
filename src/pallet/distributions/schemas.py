"""Wire shapes of distributions."""

from __future__ import annotations

from pydantic import Field

from pallet.api.schemas import Body, Id, Schema, UtcDatetime

TARGET_FIELDS = ("publication", "repository", "repository_version")


class VersionRef(Body):
    repository: str = Field(description="The repository's name.")
    version: Id = Field(description="The version's number.")


class DistributionCreate(Body):
    name: str = Field(description="Unique name: letters, digits, '.', '_', '-'.")
    base_path: str = Field(max_length=2048, description="Where the content app serves it: "
                           "/pallet/content/<base_path>/. May not overlap another's.")
    publication: Id | None = Field(None, description="Serve this publication.")
    repository: str | None = Field(None, description="Serve this repository's newest "
                                                     "publication.")
    repository_version: VersionRef | None = Field(None, description="Serve this version.")
    hidden: bool = Field(False, description="Leave it out of the content app's index page.")


class DistributionUpdate(Body):
    """Fields left out stay. A target field that is not null replaces the target; null
    removes that kind of target."""

    name: str | None = None
    base_path: str | None = Field(None, max_length=2048)
    publication: Id | None = None
    repository: str | None = None
    repository_version: VersionRef | None = None
    hidden: bool | None = None


class VersionTargetRead(Schema):
    repository: str
    version: int
    href: str


class DistributionRead(Schema):
    name: str
    href: str
    base_path: str
    base_url: str = Field(description="The path the content app serves it at.")
    hidden: bool
    publication: int | None
    publication_href: str | None
    repository: str | None
    repository_href: str | None
    repository_version: VersionTargetRead | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
