from __future__ import annotations

from typing import Any

from pydantic import Field

from pallet.api.schemas import Body, Schema, UtcDatetime
from pallet.remotes.schemas import CONNECT, READ
from pallet.replication.models import Downstream, Peer, Upstream
from pallet.transfer.layout import DistributionEntry

PATTERNS = ("Names or shell-style patterns (`*`, `?`, `[...]`) of the upstream's "
            "repositories")
CONNECT_DOC = "Seconds to connect before a request fails."
READ_DOC = ("Seconds without a byte either way before a request fails; this includes the "
            "downstream's answer to a push once the whole stream is sent (its import's last "
            "step).")
EVERY = dict(ge=5, le=366 * 86400, description="Replicate every this many seconds (a task "
                                                "schedule); null: only when asked.")


class PeerFields(Body):
    base_url: str = Field(max_length=4096, pattern=r"^https?://",
                          description="The other Pallet's address, as http(s)://host:port.")
    username: str | None = Field(None, max_length=255)
    password: str | None = Field(None, max_length=1024, description="Never shown again.")
    token: str | None = Field(None, max_length=1024, description="An API token of the other "
                                                                 "Pallet (instead of a user "
                                                                 "and password).")
    ca_cert: str | None = Field(None, description="PEM CA certificate that signed its TLS "
                                                  "certificate (replaces the system's CAs).")
    client_cert: str | None = Field(None, description="PEM client certificate.")
    client_key: str | None = Field(None, description="PEM key of the client certificate; "
                                                     "never shown again.")
    tls_validation: bool = True
    connect_timeout: float = Field(15.0, **CONNECT, description=CONNECT_DOC)
    read_timeout: float = Field(120.0, **READ, description=READ_DOC)
    repositories: list[str] = Field(default_factory=list, max_length=1000,
                                    description=PATTERNS + ".")
    distributions: list[str] = Field(default_factory=list, max_length=1000,
                                     description=PATTERNS.replace("repositories",
                                                                  "distributions")
                                     + ": the repositories they serve.")
    every_seconds: int | None = Field(None, **EVERY)


class UpstreamCreate(PeerFields):
    name: str
    base_path_prefix: str = Field("", max_length=255, description="Local distributions serve "
                                                                  "the upstream's base paths "
                                                                  "under this prefix.")
    remove_missing: bool = Field(False, description="Delete local replicas of repositories "
                                                    "the upstream no longer has (otherwise "
                                                    "they are reported).")


class DownstreamCreate(PeerFields):
    name: str
    importer: str = Field(max_length=255, description="The downstream's importer that takes "
                                                      "the pushed streams.")


class PeerUpdate(Body):
    """Every field optional: only those given change."""

    base_url: str | None = Field(None, max_length=4096, pattern=r"^https?://")
    username: str | None = Field(None, max_length=255)
    password: str | None = Field(None, max_length=1024)
    token: str | None = Field(None, max_length=1024)
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_validation: bool | None = None
    connect_timeout: float | None = Field(None, **CONNECT, description=CONNECT_DOC)
    read_timeout: float | None = Field(None, **READ, description=READ_DOC)
    repositories: list[str] | None = Field(None, max_length=1000)
    distributions: list[str] | None = Field(None, max_length=1000)
    every_seconds: int | None = Field(None, **EVERY)


class UpstreamUpdate(PeerUpdate):
    base_path_prefix: str | None = Field(None, max_length=255)
    remove_missing: bool | None = None


class DownstreamUpdate(PeerUpdate):
    importer: str | None = Field(None, max_length=255)


class PeerRead(Schema):
    name: str
    href: str
    base_url: str
    username: str | None
    has_password: bool
    has_token: bool
    ca_cert: str | None
    client_cert: str | None
    has_client_key: bool
    tls_validation: bool
    connect_timeout: float
    read_timeout: float
    repositories: list[str]
    distributions: list[str]
    every_seconds: int | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ReplicaRead(Schema):
    source: str = Field(description="The upstream's repository.")
    repository: str = Field(description="Its local replica.")
    version: int = Field(description="The upstream's version the last replication brought.")
    digest: str
    replicated_at: UtcDatetime


class UpstreamRead(PeerRead):
    base_path_prefix: str
    remove_missing: bool
    replicas: list[ReplicaRead]


class DownstreamRead(PeerRead):
    importer: str


def _peer(peer: Peer, href: str) -> dict[str, Any]:
    return dict(name=peer.name, href=href, base_url=peer.base_url, username=peer.username,
                has_password=bool(peer.password), has_token=bool(peer.token),
                ca_cert=peer.ca_cert, client_cert=peer.client_cert,
                has_client_key=bool(peer.client_key), tls_validation=peer.tls_validation,
                connect_timeout=peer.connect_timeout, read_timeout=peer.read_timeout,
                repositories=list(peer.repositories), distributions=list(peer.distributions),
                every_seconds=peer.every_seconds, created_at=peer.created_at,
                updated_at=peer.updated_at)


def upstream_read(upstream: Upstream, replicas: list[ReplicaRead]) -> UpstreamRead:
    return UpstreamRead(**_peer(upstream, f"/api/v1/upstreams/{upstream.name}"),
                        base_path_prefix=upstream.base_path_prefix,
                        remove_missing=upstream.remove_missing, replicas=replicas)


def downstream_read(downstream: Downstream) -> DownstreamRead:
    return DownstreamRead(**_peer(downstream, f"/api/v1/downstreams/{downstream.name}"),
                          importer=downstream.importer)


# -- what an upstream offers ------------------------------------------------------------------

class CatalogueRequest(Body):
    repositories: list[str] = Field(default_factory=list, max_length=1000)
    distributions: list[str] = Field(default_factory=list, max_length=1000)
    names: list[str] = Field(default_factory=list, max_length=100_000,
                             description="Repositories to say whether they still exist.")


class CatalogueEntry(Schema):
    name: str = Field(max_length=255)
    type: str = Field(max_length=64)
    version: int = Field(ge=0)
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    distributions: list[str] = Field(default_factory=list, description="The selected "
                                     "distributions serving it (if a distribution selected "
                                     "it).")
    serving: list[DistributionEntry] = Field(default_factory=list, description="The "
                                             "distributions that travel with it.")


class Catalogue(Schema):
    repositories: list[CatalogueEntry]
    absent: list[str] = Field(default_factory=list, description="Of the names asked about, "
                                                                "those that do not exist.")


class Wanted(Body):
    name: str = Field(max_length=255)
    base_version: int | None = Field(None, ge=0, description="The upstream's version number "
                                                             "the copy holds (a hint).")
    base_digest: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                                    description="The content digest the copy holds.")


class ChangeRequest(Body):
    repositories: list[Wanted] = Field(min_length=1, max_length=1000)
    fetch: bool = Field(True, description="Fetch the files of on-demand units from their "
                                          "remotes first (else such files fail the stream).")
