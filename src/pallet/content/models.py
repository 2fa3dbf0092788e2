from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pallet.db.base import AUTOINCREMENT, Base, BigId, utcnow


class Content(Base):
    """A typed unit. `digest` is its identity: the same on every server for the same key."""

    __tablename__ = "content"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    artifacts: Mapped[list["ContentArtifact"]] = relationship(
        back_populates="content", cascade="all, delete-orphan", lazy="selectin",
        order_by="ContentArtifact.relative_path")


class ContentArtifact(Base):
    """A unit's file at a relative path: the expected sha256 and size, and the artifact once
    its bytes are stored (on-demand files have none until first fetched)."""

    __tablename__ = "content_artifact"
    __table_args__ = (UniqueConstraint("content_id", "relative_path"),
                      Index("ix_content_artifact_relative_path", "relative_path"),
                      AUTOINCREMENT)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("content.id", ondelete="CASCADE"))
    relative_path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    artifact_id: Mapped[int | None] = mapped_column(
        ForeignKey("artifact.id", ondelete="RESTRICT"), index=True)

    content: Mapped[Content] = relationship(back_populates="artifacts")


class ContentReference(Base):
    """A unit another unit names (see `pallet.plugin.Reference`), stored with the naming unit.

    `key` is the repository key digest of the named unit for an exact reference (so a version
    holding the named unit is one index look-up away); null for a reference by some fields
    (a package name), which copy follows but versions do not check. `fields` are the names
    as the type gave them, for reports and for following."""

    __tablename__ = "content_reference"
    __table_args__ = (Index("ix_content_reference_key", "key"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("content.id", ondelete="CASCADE"),
                                            index=True)
    type: Mapped[str] = mapped_column(String(64))
    key: Mapped[str | None] = mapped_column(String(64))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
