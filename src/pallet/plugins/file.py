"""The `file` content type: a file at a relative path, identified by path and sha256."""

from __future__ import annotations

from pydantic import field_validator

from pallet.plugin import ContentType, Plugin, RepositoryType, UnitModel, validate_relative_path


class FileUnit(UnitModel):
    relative_path: str
    sha256: str

    @field_validator("relative_path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        return validate_relative_path(value)

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("sha256 must be 64 hexadecimal characters")
        return value


def _artifacts(unit: FileUnit) -> dict[str, str]:
    return {unit.relative_path: unit.sha256}


plugin = Plugin(
    name="file",
    description="Plain files at relative paths.",
    content_types=(ContentType(name="file", model=FileUnit,
                               key_fields=("relative_path", "sha256"), artifacts=_artifacts),),
    repository_types=(RepositoryType(name="file", content_types=("file",),
                                     description="A repository of plain files."),),
)
