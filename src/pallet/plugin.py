"""What a content-type plugin sees of Pallet: the one module plugins import.

A plugin is a `Plugin` object named by an entry point in the group `pallet.plugins.v1`. It
declares content types (a pydantic model of a unit's fields, which of them form the natural
key, and which artifacts a unit has) and repository types (which content types they hold, how
to read a remote's index, and how to render a publication). The built-in `file` type registers
this way too. The exports are pinned by a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, ClassVar, Iterable, Iterator, Protocol

from pydantic import BaseModel, ConfigDict

from pallet.errors import Invalid
from pallet.paths import validate_relative_path

API_VERSION = 1
ENTRY_POINT_GROUP = "pallet.plugins.v1"


class UnitModel(BaseModel):
    """Base for the fields of a content unit. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ContentType:
    """A kind of content unit.

    - `model`: the unit's fields, validated on the way in.
    - `key_fields`: the fields that identify a unit; equal keys mean the same unit everywhere.
    - `artifacts`: the unit's files, as {relative path: sha256}.
    - `repository_key`: the fields of which a repository version holds one unit per value
      (a file's relative path; a package's name, epoch, version, release and arch): adding a
      unit whose repository key is present replaces the unit that has it. Empty means the
      natural key, so units never replace each other.
    """

    name: str
    model: type[UnitModel]
    key_fields: tuple[str, ...]
    artifacts: Callable[[UnitModel], dict[str, str]]
    repository_key: tuple[str, ...] = ()

    @property
    def repository_key_fields(self) -> tuple[str, ...]:
        return self.repository_key or self.key_fields


@dataclass(frozen=True)
class RemoteFile:
    """One file of a unit on a remote: where to fetch it and what its bytes must be."""

    url: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class RemoteUnit:
    """A unit a remote's index announces: its fields and its files by relative path."""

    type: str
    fields: dict[str, Any]
    files: dict[str, RemoteFile]


@dataclass(frozen=True)
class PublishedFile:
    relative_path: str
    sha256: str
    size: int | None


@dataclass(frozen=True)
class PublishedUnit:
    """A unit of the version being published, as a publisher sees it."""

    type: str
    fields: dict[str, Any]
    files: tuple[PublishedFile, ...]


class MetadataOutput(Protocol):
    """Where a publisher writes its generated files; each is stored as a verified artifact."""

    def open(self, relative_path: str) -> BinaryIO: ...


class PublishOptions(BaseModel):
    """Base for a repository type's publish options. Unknown options are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# read_index(index, base_url): the units of a remote, from its index file (opened for
# reading, bytes); URLs of files are resolved against base_url. Raises Invalid on bad lines.
ReadIndex = Callable[[BinaryIO, str], Iterator[RemoteUnit]]
# publish(units, options, output): write the publication's metadata files. `units` is
# streamed (in no particular order) and may be very long: never hold it all.
Publish = Callable[[Iterable[PublishedUnit], PublishOptions, MetadataOutput], None]


@dataclass(frozen=True)
class RepositoryType:
    """A kind of repository.

    - `index_name`: the index file a remote URL ending in '/' means.
    - `read_index`: reads a remote's index (None: this type cannot sync).
    - `publish_options` / `publish`: the publish options' model and the publisher (None:
      this type is served without publications, straight from versions).
    - `pass_through`: publications serve the units' files at their own relative paths.
    """

    name: str
    content_types: tuple[str, ...]
    description: str = ""
    index_name: str | None = None
    read_index: ReadIndex | None = None
    publish_options: type[PublishOptions] = PublishOptions
    publish: Publish | None = None
    pass_through: bool = True


@dataclass(frozen=True)
class Plugin:
    name: str
    content_types: tuple[ContentType, ...] = ()
    repository_types: tuple[RepositoryType, ...] = ()
    api_version: ClassVar[int] = API_VERSION
    description: str = field(default="")


__all__ = ["API_VERSION", "ENTRY_POINT_GROUP", "ContentType", "Invalid", "MetadataOutput",
           "Plugin", "Publish", "PublishOptions", "PublishedFile", "PublishedUnit", "ReadIndex",
           "RemoteFile", "RemoteUnit", "RepositoryType", "UnitModel", "validate_relative_path"]
