from __future__ import annotations

from pydantic import Field

from pallet.api.schemas import Body, Schema, UtcDatetime


class UserCreate(Body):
    username: str
    password: str = Field(min_length=8)
    roles: list[str] = Field(default_factory=lambda: ["viewer"])


class UserUpdate(Body):
    password: str | None = Field(None, min_length=8)
    roles: list[str] | None = None
    is_active: bool | None = None


class UserRead(Schema):
    username: str
    href: str
    roles: list[str]
    is_active: bool
    created_at: UtcDatetime


class MeRead(Schema):
    username: str
    roles: list[str]
    permissions: list[str]


class TokenCreate(Body):
    name: str = Field(min_length=1, max_length=150)
    expires_in_days: int | None = Field(None, ge=1, le=36_500)


class TokenRead(Schema):
    id: int
    name: str
    created_at: UtcDatetime
    expires_at: UtcDatetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="Shown once; Pallet keeps only its hash.")
