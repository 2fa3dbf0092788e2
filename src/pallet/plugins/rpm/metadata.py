"""Metadata files a repomd.xml names that Pallet does not read (`productid`, `appstream`,
`susedata`, ...), kept verbatim: one `rpm.metadata` unit per record type, the file as its
artifact at `repodata/<its upstream name>`, so it travels in exports and a publication
serves it byte for byte, and the fields its repomd record needs to be written again.

What Pallet regenerates from its units is not kept: primary, filelists, other, updateinfo,
group (comps) and modules, with their `_db`, `_zck` and compressed (`_gz`, `_xz`, ...)
variants; nor `prestodelta`/`deltainfo`, whose delta RPMs are not mirrored (dnf falls back to
whole packages).

The file's sha256 (the artifact's digest) is its checksum in the published repomd.xml,
whatever algorithm upstream announced it by; its open checksum and size, for compressed
files, are upstream's.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import createrepo_c as cr
from pydantic import Field, field_validator

from pallet.plugin import Invalid, UnitModel
from pallet.plugins.rpm.package import validated

TYPE = "rpm.metadata"
REGENERATED = frozenset({"primary", "filelists", "other", "updateinfo", "group", "modules",
                         "prestodelta", "deltainfo"})
_VARIANTS = ("_db", "_zck", "_gz", "_xz", "_bz2", "_zst", "_zstd")
# A basename of repodata/: never repomd.xml (or its signature and key), and never the name
# of a file a publication generates (`<sha256>-primary.xml.gz` and the like).
_BASENAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]{0,254}")
_GENERATED = re.compile(r"(repomd\.xml.*|[0-9a-f]{64}-(primary|filelists|other|updateinfo|"
                        r"comps|modules)\b.*)")
_HEX = re.compile(r"[0-9a-f]{64}")


class Metadata(UnitModel):
    type: str = Field(pattern=r"[A-Za-z0-9_.-]{1,100}")  # the record's type, e.g. "productid"
    location: str  # its file's basename, served at repodata/<location>
    sha256: str = Field(pattern=_HEX.pattern)
    size: int = Field(ge=0)
    open_checksum_type: str | None = None
    open_checksum: str | None = None
    open_size: int | None = None

    @field_validator("type")
    @classmethod
    def _kept(cls, value: str) -> str:
        if not kept(value):
            raise ValueError("is a type of metadata Pallet writes itself, not kept verbatim")
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        if not _BASENAME.fullmatch(value) or _GENERATED.fullmatch(value):
            raise ValueError("must be a file name of repodata/ that a publication does not "
                             "write itself")
        return value

    @property
    def relative_path(self) -> str:
        return f"repodata/{self.location}"


def artifacts(unit: Metadata) -> dict[str, str]:
    return {unit.relative_path: unit.sha256}


def kept(record_type: str) -> bool:
    """Whether a repomd record of this type is kept verbatim (not regenerated)."""
    base = record_type
    while base.endswith(_VARIANTS):
        base = base[:base.rindex("_")]
    return base not in REGENERATED


def location_of(record: cr.RepomdRecord, where: str) -> str:
    """The basename a kept record's file is served under, or Invalid saying why not."""
    basename = (record.location_href or "").rsplit("/", 1)[-1]
    if not _BASENAME.fullmatch(basename) or _GENERATED.fullmatch(basename):
        raise Invalid(f"{where} names its {record.type[:100]} metadata at "
                      f"{(record.location_href or '')[:200]!r}, a name Pallet cannot serve "
                      "under repodata/")
    return basename


def unit_of(record: cr.RepomdRecord, location: str, sha256: str, size: int,
            where: str) -> Metadata:
    fields: dict[str, Any] = {"type": record.type, "location": location, "sha256": sha256,
                              "size": size}
    if record.checksum_open:
        fields.update(open_checksum_type=record.checksum_open_type,
                      open_checksum=record.checksum_open, open_size=record.size_open or None)
    return validated(Metadata, fields, f"{record.type[:100]} metadata in {where}")


def sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def record_of(fields: dict[str, Any], timestamp: int) -> cr.RepomdRecord:
    """The repomd record of a kept file, as upstream's was (checksummed by sha256)."""
    record = cr.RepomdRecord(fields["type"], None)
    record.location_href = f"repodata/{fields['location']}"
    record.checksum_type, record.checksum = "sha256", fields["sha256"]
    record.size = fields["size"]
    if fields.get("open_checksum"):
        record.checksum_open_type = fields["open_checksum_type"]
        record.checksum_open = fields["open_checksum"]
        if fields.get("open_size") is not None:
            record.size_open = fields["open_size"]
    record.timestamp = timestamp
    return record
