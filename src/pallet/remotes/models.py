from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pallet.db.base import AUTOINCREMENT, Base, BigId, utcnow

IMMEDIATE, ON_DEMAND, STREAMED = "immediate", "on_demand", "streamed"
POLICIES = (IMMEDIATE, ON_DEMAND, STREAMED)


class Remote(Base):
    """Where a repository syncs from, and how to talk to it."""

    __tablename__ = "remote"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(4096))
    policy: Mapped[str] = mapped_column(String(16), default=IMMEDIATE)
    # Mirror: the synced version holds exactly the remote's units. Additive: it keeps the rest.
    mirror: Mapped[bool] = mapped_column(Boolean, default=False)
    download_concurrency: Mapped[int] = mapped_column(Integer, default=10)
    max_retries: Mapped[int] = mapped_column(Integer, default=3)
    connect_timeout: Mapped[float] = mapped_column(Float, default=30.0)
    read_timeout: Mapped[float] = mapped_column(Float, default=60.0)
    total_timeout: Mapped[float | None] = mapped_column(Float)
    username: Mapped[str | None] = mapped_column(String(255))
    password: Mapped[str | None] = mapped_column(String(1024))
    ca_cert: Mapped[str | None] = mapped_column(Text)
    client_cert: Mapped[str | None] = mapped_column(Text)
    client_key: Mapped[str | None] = mapped_column(Text)
    tls_validation: Mapped[bool] = mapped_column(Boolean, default=True)
    proxy_url: Mapped[str | None] = mapped_column(String(4096))
    proxy_username: Mapped[str | None] = mapped_column(String(255))
    proxy_password: Mapped[str | None] = mapped_column(String(1024))
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The repository type's sync options, as given (validated against its model).
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RemoteArtifact(Base):
    """Where a unit's file can be fetched from a remote: enough to download it on demand,
    before or after its bytes are stored. `failed_at` starts a cool-down after bad bytes."""

    __tablename__ = "remote_artifact"
    __table_args__ = (UniqueConstraint("content_artifact_id", "remote_id"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    content_artifact_id: Mapped[int] = mapped_column(
        ForeignKey("content_artifact.id", ondelete="CASCADE"))
    remote_id: Mapped[int] = mapped_column(ForeignKey("remote.id", ondelete="CASCADE"),
                                           index=True)
    url: Mapped[str] = mapped_column(String(8192))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    failed_at: Mapped[datetime | None] = mapped_column()


class SyncFingerprint(Base):
    """What a repository's last sync from a remote read first, when that file vouches for
    everything the remote holds (a repomd.xml names every other file by checksum): the next
    sync that reads the same bytes, with the same policy, mode and sync options, onto the
    version this one left, has nothing to do."""

    __tablename__ = "sync_fingerprint"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repository.id", ondelete="CASCADE"), primary_key=True)
    remote_id: Mapped[int] = mapped_column(ForeignKey("remote.id", ondelete="CASCADE"),
                                           primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column()  # the repository's newest version after that sync
    policy: Mapped[str] = mapped_column(String(16))
    mirror: Mapped[bool] = mapped_column()
    # The remote's sync options as that sync applied them, those left at their default
    # omitted: {} for a sync made before remotes had options, which applied none.
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
