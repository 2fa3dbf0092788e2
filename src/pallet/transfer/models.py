from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pallet.db.base import AUTOINCREMENT, Base, BigId, utcnow


class SigningKey(Base):
    """An ed25519 key pair that signs exports' tables of contents."""

    __tablename__ = "signing_key"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    key_id: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(Text)
    private_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Exporter(Base):
    """What to export and where to: repositories (by id), an output directory under the
    allowed export directories, and defaults for each export."""

    __tablename__ = "exporter"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    path: Mapped[str] = mapped_column(String(4096))
    repository_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    chunk_size: Mapped[int | None] = mapped_column(BigInteger)
    signing_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("signing_key.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Export(Base):
    """One export that was written: its files, table of contents and what it holds. An
    exporter's newest export is where its next incremental export starts."""

    __tablename__ = "export"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    exporter_id: Mapped[int | None] = mapped_column(
        ForeignKey("exporter.id", ondelete="SET NULL"), index=True)
    export_uuid: Mapped[str] = mapped_column(String(64))
    incremental: Mapped[bool] = mapped_column(Boolean)
    # The directory holding the files, or null for an export streamed to a client.
    directory: Mapped[str | None] = mapped_column(String(4096))
    toc_file: Mapped[str | None] = mapped_column(String(255))
    chunks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # [{repository_id, name, version, digest, base_version}]: where the next one starts.
    versions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    signed_by: Mapped[str | None] = mapped_column(String(64))
    artifacts: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Importer(Base):
    """How archives are imported: source repository names mapped to destination names,
    whether missing destinations are created, and the keys whose signatures it trusts."""

    __tablename__ = "importer"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    mapping: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    create_repositories: Mapped[bool] = mapped_column(Boolean, default=False)
    distributions: Mapped[bool] = mapped_column(Boolean, default=True)
    trusted_keys: Mapped[list[str]] = mapped_column(JSON, default=list)
    require_signature: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    sources = None  # an importer takes whichever repositories an archive brings


class Import(Base):
    """One import that completed: the archive it read and what it did to each repository."""

    __tablename__ = "import_run"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    importer_id: Mapped[int | None] = mapped_column(
        ForeignKey("importer.id", ondelete="SET NULL"), index=True)
    export_uuid: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(4096))
    incremental: Mapped[bool] = mapped_column(Boolean)
    signed_by: Mapped[str | None] = mapped_column(String(64))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    bytes_written: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

