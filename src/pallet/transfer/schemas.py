from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pallet.api.schemas import Body, Id, Schema, UtcDatetime
from pallet.transfer.models import Export, Exporter, Import, Importer, SigningKey

Names = list[str]


class SigningKeyCreate(Body):
    name: str


class SigningKeyRead(Schema):
    name: str
    href: str
    key_id: str
    public_key: str = Field(description="PEM; give it to importers that should trust it.")
    created_at: UtcDatetime


def key_read(key: SigningKey) -> SigningKeyRead:
    return SigningKeyRead(name=key.name, href=f"/api/v1/signing-keys/{key.name}",
                          key_id=key.key_id, public_key=key.public_key,
                          created_at=key.created_at)


class ExporterCreate(Body):
    name: str
    path: str = Field(description="Output directory, under the allowed export directories.")
    repositories: Names = Field(min_length=1, max_length=10_000)
    chunk_size: int | None = Field(None, description="Bytes per chunk file; null: one file.")
    signing_key: str | None = Field(None, description="Sign every export with this key.")


class ExporterUpdate(Body):
    # Left out: unchanged; never null (an exporter always has a directory).
    path: str = Field(None, description="Output directory, under the allowed export "
                                        "directories.")
    repositories: Names | None = Field(None, min_length=1, max_length=10_000)
    chunk_size: int | None = None
    signing_key: str | None = None


class ExporterRead(Schema):
    name: str
    href: str
    path: str
    repositories: Names
    chunk_size: int | None
    signing_key: str | None
    last_export: int | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


def exporter_read(exporter: Exporter, repositories: Names, signing_key: str | None,
                  last_export: int | None) -> ExporterRead:
    return ExporterRead(name=exporter.name, href=f"/api/v1/exporters/{exporter.name}",
                        path=exporter.path, repositories=repositories,
                        chunk_size=exporter.chunk_size, signing_key=signing_key,
                        last_export=last_export, created_at=exporter.created_at,
                        updated_at=exporter.updated_at)


class ExportRequest(Body):
    incremental: bool = Field(False, description="Only the change since the last export.")
    versions: dict[str, Id] = Field(default_factory=dict,
                                    description="Version to export per repository; default "
                                                "the newest.")
    start_versions: dict[str, Id] = Field(default_factory=dict,
                                          description="Export the change since these "
                                                      "versions (an explicit incremental).")
    chunk_size: int | None = Field(None, description="Override the exporter's chunk size.")
    single_file: bool = Field(False, description="One file, whatever the chunk size.")
    fetch: bool = Field(True, description="Fetch the files of on-demand units from their "
                                          "remotes first (else such files fail the export).")


class ExportRead(Schema):
    id: int
    href: str
    exporter: str | None
    export_id: str
    incremental: bool
    directory: str | None
    toc_file: str | None
    chunks: list[dict[str, Any]]
    versions: list[dict[str, Any]]
    signed_by: str | None
    artifacts: int
    bytes: int
    duration_seconds: float
    created_at: UtcDatetime


def export_read(export: Export, exporter: str | None) -> ExportRead:
    return ExportRead(id=export.id, href=f"/api/v1/exports/{export.id}", exporter=exporter,
                      export_id=export.export_uuid, incremental=export.incremental,
                      directory=export.directory, toc_file=export.toc_file,
                      chunks=export.chunks, versions=export.versions,
                      signed_by=export.signed_by, artifacts=export.artifacts,
                      bytes=export.bytes, duration_seconds=export.duration_seconds,
                      created_at=export.created_at)


class TreeRequest(Body):
    path: str = Field(description="Target directory, under the allowed export directories.")
    method: Literal["copy", "hardlink", "symlink"] = "copy"
    start_version: Id | None = Field(None, description="Only the change since this version "
                                                       "of the repository (incremental).")


class ImporterCreate(Body):
    name: str
    mapping: dict[str, str] = Field(default_factory=dict,
                                    description="Source repository name -> destination name; "
                                                "unmapped ones keep their name.")
    create_repositories: bool = Field(False, description="Create missing destinations.")
    distributions: bool = Field(True, description="Create or move the distributions the "
                                                  "archive brings.")
    trusted_keys: list[str] = Field(default_factory=list, max_length=100,
                                    description="PEM public keys whose signatures it trusts.")
    require_signature: bool = Field(False, description="Refuse archives not signed by a "
                                                       "trusted key.")


class ImporterUpdate(Body):
    mapping: dict[str, str] | None = None
    create_repositories: bool | None = None
    distributions: bool | None = None
    trusted_keys: list[str] | None = Field(None, max_length=100)
    require_signature: bool | None = None


class ImporterRead(Schema):
    name: str
    href: str
    mapping: dict[str, str]
    create_repositories: bool
    distributions: bool
    trusted_keys: list[str]
    require_signature: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime


def importer_read(importer: Importer) -> ImporterRead:
    return ImporterRead(name=importer.name, href=f"/api/v1/importers/{importer.name}",
                        mapping=importer.mapping, create_repositories=importer.create_repositories,
                        distributions=importer.distributions, trusted_keys=importer.trusted_keys,
                        require_signature=importer.require_signature,
                        created_at=importer.created_at, updated_at=importer.updated_at)


class ImportRequest(Body):
    path: str | None = Field(None, description="A table of contents (`*.toc.json`, its chunks "
                                               "beside it) or a single-stream archive, under "
                                               "the allowed import directories.")
    upload: Id | None = Field(None, description="An upload holding a single-stream archive.")


class ImportRead(Schema):
    id: int
    href: str
    importer: str | None
    export_id: str
    source: str
    incremental: bool
    signed_by: str | None
    plan: dict[str, Any]
    bytes_written: int
    duration_seconds: float
    created_at: UtcDatetime


def import_read(record: Import, importer: str | None) -> ImportRead:
    return ImportRead(id=record.id, href=f"/api/v1/imports/{record.id}", importer=importer,
                      export_id=record.export_uuid, source=record.source,
                      incremental=record.incremental, signed_by=record.signed_by,
                      plan=record.plan, bytes_written=record.bytes_written,
                      duration_seconds=record.duration_seconds, created_at=record.created_at)
