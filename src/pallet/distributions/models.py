from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pallet.db.base import AUTOINCREMENT, Base, BigId, utcnow


class Distribution(Base):
    """A base path in the content app, serving one of: a publication, a repository version,
    or a repository (its newest publication). A target deleted later leaves it serving 404."""

    __tablename__ = "distribution"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    base_path: Mapped[str] = mapped_column(String(1024), unique=True)
    publication_id: Mapped[int | None] = mapped_column(
        ForeignKey("publication.id", ondelete="SET NULL"), index=True)
    repository_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("repository_version.id", ondelete="SET NULL"), index=True)
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repository.id", ondelete="SET NULL"), index=True)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ServingGeneration(Base):
    """One row whose number grows whenever what the content app serves may change, so
    content-app processes know when their caches are stale with one cheap query."""

    __tablename__ = "serving_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
