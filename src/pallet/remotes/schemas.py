"""Wire shapes of remotes and of the sync request. Secrets are write-only: a remote is read
back with `password_set`, `proxy_password_set` and `client_key_set`, never the values."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pallet.api.schemas import Body, Schema, UtcDatetime
from pallet.remotes.models import Remote

Policy = Literal["immediate", "on_demand", "streamed"]
PEM_LIMIT = 1 << 20
MAX_HEADERS = 100

# Bounds shared by create and update.
CONCURRENCY = dict(ge=1, le=64)
RETRIES = dict(ge=0, le=20)
CONNECT = dict(gt=0, le=600)
READ = dict(gt=0, le=3600)
TOTAL = dict(gt=0, le=7 * 86400)

URL_DOC = ("The index's URL (http, https or file); ending in '/', it names the type's index "
           "file there (PULP_MANIFEST for `file`).")
HEADERS_DOC = "Extra request headers, name -> value."
MAX_OPTIONS = 100
OPTIONS_DOC = ("The repository type's sync options, name -> value (rpm: skip_types, "
               "retain_package_versions; file: none); unknown ones are refused. A list "
               "option may be given as comma-separated text.")


class RemoteCreate(Body):
    name: str = Field(description="Unique name: letters, digits, '.', '_', '-'.")
    type: str = Field("file", description="Repository type it syncs (one that can sync).")
    url: str = Field(max_length=4096, description=URL_DOC)
    policy: Policy = Field("immediate", description="immediate: download at sync; on_demand: "
                           "fetch and store at first request; streamed: fetch, never store.")
    mirror: bool = Field(False, description="Syncs make the repository equal to the remote "
                         "(else they only add).")
    download_concurrency: int = Field(10, **CONCURRENCY)
    max_retries: int = Field(3, **RETRIES, description="Retries of a failed request (on "
                             "connection errors, timeouts, 429 and 5xx).")
    connect_timeout: float = Field(30.0, **CONNECT, description="Seconds to connect.")
    read_timeout: float = Field(60.0, **READ, description="Seconds without data that fail "
                                "a request.")
    total_timeout: float | None = Field(None, **TOTAL, description="Seconds one request "
                                        "(the index, or one file) may take in all.")
    username: str | None = Field(None, max_length=255, description="Basic auth user name.")
    password: str | None = Field(None, max_length=1024, description="Write-only.")
    ca_cert: str | None = Field(None, max_length=PEM_LIMIT, description="PEM CA certificate(s) "
                                "trusted instead of the system's.")
    client_cert: str | None = Field(None, max_length=PEM_LIMIT, description="PEM client "
                                    "certificate.")
    client_key: str | None = Field(None, max_length=PEM_LIMIT, description="PEM client key "
                                   "(unencrypted); write-only.")
    tls_validation: bool = Field(True, description="Verify the server's certificate.")
    proxy_url: str | None = Field(None, max_length=4096, description="http(s) proxy URL.")
    proxy_username: str | None = Field(None, max_length=255)
    proxy_password: str | None = Field(None, max_length=1024, description="Write-only.")
    headers: dict[str, str] = Field(default_factory=dict, max_length=MAX_HEADERS,
                                    description=HEADERS_DOC)
    options: dict[str, Any] = Field(default_factory=dict, max_length=MAX_OPTIONS,
                                    description=OPTIONS_DOC)


class RemoteUpdate(Body):
    """Only the fields given change; null clears an optional field."""

    name: str | None = None
    url: str | None = Field(None, max_length=4096, description=URL_DOC)
    policy: Policy | None = None
    mirror: bool | None = None
    download_concurrency: int | None = Field(None, **CONCURRENCY)
    max_retries: int | None = Field(None, **RETRIES)
    connect_timeout: float | None = Field(None, **CONNECT)
    read_timeout: float | None = Field(None, **READ)
    total_timeout: float | None = Field(None, **TOTAL)
    username: str | None = Field(None, max_length=255)
    password: str | None = Field(None, max_length=1024)
    ca_cert: str | None = Field(None, max_length=PEM_LIMIT)
    client_cert: str | None = Field(None, max_length=PEM_LIMIT)
    client_key: str | None = Field(None, max_length=PEM_LIMIT)
    tls_validation: bool | None = None
    proxy_url: str | None = Field(None, max_length=4096)
    proxy_username: str | None = Field(None, max_length=255)
    proxy_password: str | None = Field(None, max_length=1024)
    headers: dict[str, str] | None = Field(None, max_length=MAX_HEADERS,
                                           description=HEADERS_DOC + " Replaces them all.")
    options: dict[str, Any] | None = Field(None, max_length=MAX_OPTIONS,
                                           description=OPTIONS_DOC + " Replaces them all; "
                                           "null or {}: none (the type's defaults).")


class RemoteRead(Schema):
    name: str
    href: str
    type: str
    url: str
    policy: str
    mirror: bool
    download_concurrency: int
    max_retries: int
    connect_timeout: float
    read_timeout: float
    total_timeout: float | None
    username: str | None
    password_set: bool
    ca_cert: str | None
    client_cert: str | None
    client_key_set: bool
    tls_validation: bool
    proxy_url: str | None
    proxy_username: str | None
    proxy_password_set: bool
    headers: dict[str, str]
    options: dict[str, Any]
    created_at: UtcDatetime
    updated_at: UtcDatetime


def remote_read(remote: Remote) -> RemoteRead:
    return RemoteRead(
        name=remote.name, href=f"/api/v1/remotes/{remote.name}", type=remote.type,
        url=remote.url, policy=remote.policy, mirror=remote.mirror,
        download_concurrency=remote.download_concurrency, max_retries=remote.max_retries,
        connect_timeout=remote.connect_timeout, read_timeout=remote.read_timeout,
        total_timeout=remote.total_timeout, username=remote.username,
        password_set=remote.password is not None, ca_cert=remote.ca_cert,
        client_cert=remote.client_cert, client_key_set=remote.client_key is not None,
        tls_validation=remote.tls_validation, proxy_url=remote.proxy_url,
        proxy_username=remote.proxy_username,
        proxy_password_set=remote.proxy_password is not None,
        headers=dict(remote.headers or {}), options=dict(remote.options or {}),
        created_at=remote.created_at,
        updated_at=remote.updated_at)


class SyncRequest(Body):
    remote: str | None = Field(None, description="The remote's name; default: the "
                               "repository's remote.")
    mirror: bool | None = Field(None, description="Make the repository equal to the remote "
                                "(true) or only add (false); default: the remote's setting.")
