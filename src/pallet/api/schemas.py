"""Wire pieces every router shares."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]

T = TypeVar("T")

# An id or version number: what a 64-bit column holds.
Id = Annotated[int, Field(ge=0, le=2**63 - 1)]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _refuse_lone_surrogates(value: Any, where: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where or 'the body'} holds text that is not valid Unicode "
                             "(a lone surrogate escape)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_lone_surrogates(key, where)
            _refuse_lone_surrogates(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_lone_surrogates(item, f"{where}[{index}]")


class Body(BaseModel):
    """Base of request bodies: unknown fields are refused, not ignored; so is text that
    JSON can escape but nothing can store (a lone surrogate, `\\ud800`), wherever it is:
    it would fail later, in the database or a file name, as a 500."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        _refuse_lone_surrogates(data, "")
        return data


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
