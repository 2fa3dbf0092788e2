from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from pallet.api.schemas import Body, Id, Schema, UtcDatetime
from pallet.repositories.models import Repository, RepositoryVersion


class RepositoryCreate(Body):
    name: str = Field(description="Unique name: letters, digits, '.', '_', '-'.")
    type: str = Field("file", description="Repository type, from a plugin.")
    description: str = Field("", max_length=10_000)
    retain_versions: int | None = Field(None, ge=1, le=1_000_000,
                                        description="Keep only the newest N versions.")
    remote: str | None = Field(None, description="The remote `sync` uses when none is named.")
    autopublish: bool = Field(False, description="Publish every new version, in the task "
                                                 "that creates it, with `publish_options`.")
    publish_options: dict[str, Any] = Field(default_factory=dict,
                                            description="The type's publish options.")


class RepositoryUpdate(Body):
    name: str | None = None
    description: str | None = Field(None, max_length=10_000)
    retain_versions: int | None = Field(None, ge=1, le=1_000_000)
    remote: str | None = Field(None, description="A remote's name; null: no default remote.")
    autopublish: bool | None = None
    publish_options: dict[str, Any] | None = Field(None, description="Replaces the stored "
                                                   "options; null or {}: the defaults.")


class RepositoryRead(Schema):
    name: str
    href: str
    type: str
    description: str
    retain_versions: int | None
    remote: str | None
    autopublish: bool
    publish_options: dict[str, Any]
    latest_version: int
    latest_version_href: str
    created_at: UtcDatetime
    updated_at: UtcDatetime


def repository_read(repository: Repository, latest: int, remote: str | None = None
                    ) -> RepositoryRead:
    """`remote`: the name of the repository's remote, if it has one."""
    href = f"/api/v1/repositories/{repository.name}"
    return RepositoryRead(name=repository.name, href=href, type=repository.type,
                          description=repository.description,
                          retain_versions=repository.retain_versions, remote=remote,
                          autopublish=repository.autopublish,
                          publish_options=repository.publish_options or {},
                          latest_version=latest,
                          latest_version_href=f"{href}/versions/{latest}",
                          created_at=repository.created_at, updated_at=repository.updated_at)


class TypeCounts(Schema):
    added: int
    removed: int
    present: int


class BrokenReferences(Schema):
    count: int = Field(description="References the version's change left unresolved: from "
                       "units it added, or to units it removed.")
    examples: list[dict[str, Any]] = Field(description="A few: the naming unit (id, type) "
                                           "and what it names.")


class VersionRead(Schema):
    repository: str
    number: int
    href: str
    content_href: str
    digest: str
    counts: dict[str, TypeCounts]
    broken_references: BrokenReferences | None = None
    created_at: UtcDatetime


def version_read(repository: Repository, version: RepositoryVersion) -> VersionRead:
    href = f"/api/v1/repositories/{repository.name}/versions/{version.number}"
    return VersionRead(repository=repository.name, number=version.number, href=href,
                       content_href=f"/api/v1/content?repository={repository.name}"
                                    f"&version={version.number}",
                       digest=version.digest, counts=version.counts or {},
                       broken_references=version.broken_references,
                       created_at=version.created_at)


class ModifyRequest(Body):
    add_content: list[Id] = Field(default_factory=list, max_length=5_000_000,
                                  description="Ids of content units to add.")
    remove_content: list[Id] = Field(default_factory=list, max_length=5_000_000,
                                     description="Ids of content units to remove.")
    remove_all: bool = Field(False, description="Start from an empty set instead of the base.")
    base_version: Id | None = Field(None, description="Version to start from; default newest.")
    references: Literal["report", "follow"] = Field(
        "report", description="report: references the change breaks are recorded on the new "
        "version; follow: units whose references a removal breaks are removed too.")


FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
FieldValue = Annotated[str, StringConstraints(max_length=1024)]


class Match(Body):
    type: str = Field(max_length=64, description="A content type of the source, e.g. "
                      "rpm.package.")
    fields: dict[FieldName, FieldValue] = Field(
        min_length=1, max_length=16, description="Field values the units have, e.g. "
        "{\"name\": \"bash\"}; fields the type indexes are an index look-up.")


class CopyRequest(Body):
    source: str = Field(description="The repository to copy from.")
    source_version: Id | None = Field(None, description="Its version; default the newest.")
    content: list[Id] = Field(default_factory=list, max_length=1_000_000,
                              description="Ids of units of that version to copy.")
    match: list[Match] = Field(default_factory=list, max_length=10_000,
                               description="Units of that version to copy, by field values.")
    references: bool = Field(True, description="Bring along the units the copied ones name "
                             "(an advisory's packages, a group's packages).")
    dependencies: bool = Field(False, description="Bring along what the type says they need "
                               "(rpm: dependencies solved by libsolv).")


class RepairRequest(Body):
    report_only: bool = Field(False, description="Only report missing and corrupt artifacts; "
                                                 "fetch nothing, change nothing.")


class DiffCounts(Schema):
    added: int
    removed: int


class DiffRead(Schema):
    repository: str
    base_version: int
    version: int
    counts: dict[str, DiffCounts]
    added_href: str
    removed_href: str
