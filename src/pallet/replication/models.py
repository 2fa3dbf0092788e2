from __future__ import annotations

from datetime import datetime

from sqlalchemy import (JSON, Boolean, Float, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column

from pallet.db.base import AUTOINCREMENT, Base, BigId, utcnow


class Peer:
    """How to reach another Pallet and what to replicate: the columns an upstream (which this
    server pulls from) and a downstream (which it pushes into) share."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    base_url: Mapped[str] = mapped_column(String(4096))
    username: Mapped[str | None] = mapped_column(String(255))
    password: Mapped[str | None] = mapped_column(String(1024))
    token: Mapped[str | None] = mapped_column(String(1024))
    ca_cert: Mapped[str | None] = mapped_column(Text)
    client_cert: Mapped[str | None] = mapped_column(Text)
    client_key: Mapped[str | None] = mapped_column(Text)
    tls_validation: Mapped[bool] = mapped_column(Boolean, default=True)
    # Seconds to connect, and without a byte (either way) before a request fails.
    connect_timeout: Mapped[float] = mapped_column(Float, default=15.0)
    read_timeout: Mapped[float] = mapped_column(Float, default=120.0)
    # Names or shell-style patterns of the upstream's repositories and distributions.
    repositories: Mapped[list[str]] = mapped_column(JSON, default=list)
    distributions: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Replicate every this many seconds (a task schedule), or only when asked.
    every_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Upstream(Peer, Base):
    """A Pallet this server replicates from."""

    __tablename__ = "upstream"
    __table_args__ = AUTOINCREMENT

    # Local distributions serve the upstream's base paths under this prefix ("" for none).
    base_path_prefix: Mapped[str] = mapped_column(String(255), default="")
    # Delete local replicas of repositories the upstream no longer has (else: report them).
    remove_missing: Mapped[bool] = mapped_column(Boolean, default=False)


class Downstream(Peer, Base):
    """A Pallet this server pushes into, through that server's importer `importer`."""

    __tablename__ = "downstream"
    __table_args__ = AUTOINCREMENT

    importer: Mapped[str] = mapped_column(String(255))


class Replica(Base):
    """A local repository replicated from an upstream's repository, and the version of it
    the last replication brought."""

    __tablename__ = "replica"
    __table_args__ = (UniqueConstraint("upstream_id", "source"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    upstream_id: Mapped[int] = mapped_column(ForeignKey("upstream.id", ondelete="CASCADE"),
                                             index=True)
    source: Mapped[str] = mapped_column(String(255))  # the upstream's repository name
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"),
                                               index=True)
    version: Mapped[int] = mapped_column(Integer)  # the upstream's version number
    digest: Mapped[str] = mapped_column(String(64))
    replicated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
