from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint, text)
from sqlalchemy.orm import Mapped, mapped_column

from pallet.db.base import AUTOINCREMENT, Base, BigId, utcnow


class Repository(Base):
    __tablename__ = "repository"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    retain_versions: Mapped[int | None] = mapped_column(Integer)
    # Version numbers are never reused, even after the newest version is deleted.
    next_version: Mapped[int] = mapped_column(Integer, default=1)
    # The remote `sync` uses when none is named.
    remote_id: Mapped[int | None] = mapped_column(ForeignKey("remote.id", ondelete="SET NULL"),
                                                  index=True)
    # Publish every new version, in the transaction that creates it, with these options.
    autopublish: Mapped[bool] = mapped_column(Boolean, default=False)
    publish_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RepositoryVersion(Base):
    """An immutable set of content. `lthash` is the set's homomorphic hash state."""

    __tablename__ = "repository_version"
    __table_args__ = (UniqueConstraint("repository_id", "number"),
                      AUTOINCREMENT)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lthash: Mapped[bytes] = mapped_column(LargeBinary)
    digest: Mapped[str] = mapped_column(String(80))
    # References its change left unresolved: {count, examples} (repositories/references.py)
    broken_references: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# The newest version holds one unit per repository key: the database refuses a second open
# row with the same key, whatever code path writes it.
OPEN_KEY_INDEX = Index("uq_repository_content_open_key", "repository_id", "repository_key",
                       unique=True, sqlite_where=text("version_removed IS NULL"),
                       postgresql_where=text("version_removed IS NULL"))


class RepositoryContent(Base):
    """Membership as a range: present in versions version_added <= n < version_removed.

    `repository_key` is the unit's repository key digest (see `pallet.plugin.ContentType`),
    copied here so that the database can enforce one unit per key. It is NULL only on rows
    that shared a key with another row before keys were enforced (migration 0005); the next
    version made resolves them."""

    __tablename__ = "repository_content"
    __table_args__ = (
        Index("ix_repository_content_added", "repository_id", "version_added"),
        Index("ix_repository_content_removed", "repository_id", "version_removed"),
        Index("ix_repository_content_member", "repository_id", "content_id"),
        OPEN_KEY_INDEX,
        AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"))
    content_id: Mapped[int] = mapped_column(ForeignKey("content.id", ondelete="RESTRICT"),
                                            index=True)
    version_added: Mapped[int] = mapped_column(Integer)
    version_removed: Mapped[int | None] = mapped_column(Integer)
    repository_key: Mapped[str | None] = mapped_column(String(64))
