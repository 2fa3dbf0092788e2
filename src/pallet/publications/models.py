from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pallet.db.base import AUTOINCREMENT, Base, BigId, utcnow


class Publication(Base):
    """A servable rendering of one version with one set of publish options: generated
    metadata files, plus (pass-through) the version's content at its own relative paths."""

    __tablename__ = "publication"
    __table_args__ = (UniqueConstraint("version_id", "options_digest"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"),
                                               index=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("repository_version.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # sha256 of the canonical options: the same version and options are published once.
    options_digest: Mapped[str] = mapped_column(String(64))
    pass_through: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    metadata_files: Mapped[list["PublishedMetadata"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="PublishedMetadata.relative_path")


class PublishedMetadata(Base):
    """A generated file of a publication (an index, a manifest), stored as an artifact."""

    __tablename__ = "published_metadata"
    __table_args__ = (UniqueConstraint("publication_id", "relative_path"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    publication_id: Mapped[int] = mapped_column(ForeignKey("publication.id", ondelete="CASCADE"))
    relative_path: Mapped[str] = mapped_column(String(1024))
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifact.id", ondelete="RESTRICT"),
                                             index=True)
