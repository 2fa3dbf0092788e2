from __future__ import annotations

from pydantic import Field

from pallet.api.schemas import Body, Schema, UtcDatetime


class UploadCreate(Body):
    size: int = Field(ge=0, description="The file's whole size in bytes.")


class UploadCommit(Body):
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="The expected sha256.")
    relative_path: str | None = Field(
        None, description="Also make a `file` content unit of the artifact at this path.")
    type: str | None = Field(
        None, description="Also make a unit of this content type from the file's own "
                          "contents (types that read their fields from the file, such as "
                          "`rpm.package` from an RPM's header); instead of `relative_path`.")
    repository: str | None = Field(
        None, description="Also add that unit to this repository: a new version, made by "
                          "the same task (needs `relative_path` or `type`).")


class UploadRead(Schema):
    id: int
    href: str
    size: int
    received: list[tuple[int, int]] = Field(description="Byte ranges received, inclusive.")
    received_bytes: int
    complete: bool
    created_by: str | None
    created_at: UtcDatetime
