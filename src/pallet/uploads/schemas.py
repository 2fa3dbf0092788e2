from __future__ import annotations

from pydantic import Field

from pallet.api.schemas import Body, Schema, UtcDatetime


class UploadCreate(Body):
    size: int = Field(ge=0, description="The file's whole size in bytes.")


class UploadCommit(Body):
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="The expected sha256.")


class UploadRead(Schema):
    id: int
    href: str
    size: int
    received: list[tuple[int, int]] = Field(description="Byte ranges received, inclusive.")
    received_bytes: int
    complete: bool
    created_by: str | None
    created_at: UtcDatetime
