"""Wire pieces every router shares."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]

T = TypeVar("T")

# An id or version number: what a 64-bit column holds.
Id = Annotated[int, Field(ge=0, le=2**63 - 1)]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Body(BaseModel):
    """Base of request bodies: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Page(Schema, Generic[T]):
    count: int
    next: str | None
    previous: str | None
    results: list[T]


class ErrorDetail(Schema):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(Schema):
    error: ErrorDetail
