"""What a content-type plugin sees of Pallet: the one module plugins import.

A plugin is a `Plugin` object named by an entry point in the group `pallet.plugins.v1`. It
declares content types (a pydantic model of a unit's fields, which of them form the natural
key, and which artifacts a unit has) and repository types (which content types they hold).
The built-in `file` type registers this way too. The exports are pinned by a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

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
    """

    name: str
    model: type[UnitModel]
    key_fields: tuple[str, ...]
    artifacts: Callable[[UnitModel], dict[str, str]]


@dataclass(frozen=True)
class RepositoryType:
    name: str
    content_types: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Plugin:
    name: str
    content_types: tuple[ContentType, ...] = ()
    repository_types: tuple[RepositoryType, ...] = ()
    api_version: ClassVar[int] = API_VERSION
    description: str = field(default="")


__all__ = ["API_VERSION", "ENTRY_POINT_GROUP", "ContentType", "Invalid", "Plugin",
           "RepositoryType", "UnitModel", "validate_relative_path"]
