"""The archive format: its members, their order, and the header and table of contents.

docs/export-format.md specifies it for people; this module is the same specification for
the writer and the reader. An archive is one tar stream:

    pallet-export/header.json                       what the archive holds
    artifacts/<sha256>                              each artifact once, by ascending sha256
    pallet-export/repositories/<i>/added-<n>.jsonl  units added to repository i
    pallet-export/repositories/<i>/removed-<n>.txt  identities of units it removes
    pallet-export/toc.json                          only in a single stream: the table of
                                                    contents, covering the bytes before it

Written as files, the table of contents is a file of its own beside the chunks.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pallet.errors import validation_problems
from pallet.transfer.tarstream import BadArchive

FORMAT = "pallet-export"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)  # this release reads these; the next keeps reading the previous

TOC_FILE_SUFFIX = ".toc.json"  # a table of contents written as a file: <base>.toc.json
HEADER = "pallet-export/header.json"
TOC = "pallet-export/toc.json"
ARTIFACT = re.compile(r"^artifacts/([0-9a-f]{64})$")
UNITS = re.compile(r"^pallet-export/repositories/(\d{4})/(added|removed)-(\d{6})\.(jsonl|txt)$")
UNITS_PER_MEMBER = 10_000
MAX_METADATA_MEMBER = 64 << 20
MAX_TOC_SIZE = 16 << 20
MAX_HEADER_SIZE = MAX_TOC_SIZE  # the table of contents holds the header whole
# Decoded JSON costs up to ~120 bytes per value ([{},{},…]: 3 bytes each, ~20 times its size),
# so metadata may hold at most one value per this many bytes of its limit: decoded, it stays
# within ~8 times the limit whatever its shape.
BYTES_PER_VALUE = 16
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
HEX64 = r"^[0-9a-f]{64}$"


def artifact_member(sha256: str) -> str:
    return f"artifacts/{sha256}"


def units_member(index: int, kind: str, number: int) -> str:
    suffix = "jsonl" if kind == "added" else "txt"
    return f"pallet-export/repositories/{index:04d}/{kind}-{number:06d}.{suffix}"


class _Strict(BaseModel):
    # strict: JSON's types as they are; "3", 3.0 or true are not the number 3.
    model_config = ConfigDict(extra="forbid", strict=True)


class DistributionEntry(_Strict):
    name: str = Field(max_length=255)
    base_path: str = Field(max_length=1024)


class RepositoryEntry(_Strict):
    """One exported repository version, and (incremental) the version it starts from."""

    index: int = Field(ge=0, le=9999)
    name: str = Field(max_length=255)
    type: str = Field(max_length=64)
    description: str = Field("", max_length=10_000)
    version: int = Field(ge=0)
    digest: str = Field(pattern=HEX64)
    base_version: int | None = Field(None, ge=0)
    base_digest: str | None = Field(None, pattern=HEX64)
    counts: dict[str, dict[str, int]]
    added: int = Field(ge=0)
    removed: int = Field(ge=0)
    autopublish: bool = False
    publish_options: dict[str, Any] = Field(default_factory=dict)
    publications: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    distributions: list[DistributionEntry] = Field(default_factory=list, max_length=100)


class Header(_Strict):
    format: Literal["pallet-export"]
    format_version: int
    export_id: str = Field(max_length=64)
    created_at: str = Field(max_length=64)
    exporter: str = Field(max_length=255)
    incremental: bool
    repositories: list[RepositoryEntry] = Field(max_length=10_000)
    artifacts: int = Field(ge=0)
    artifact_bytes: int = Field(ge=0)


class ChunkEntry(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,255}$")
    size: int = Field(ge=0)
    sha256: str = Field(pattern=HEX64)


class SignatureEntry(_Strict):
    algorithm: str = Field(max_length=32)
    key_id: str = Field(max_length=64)
    value: str = Field(max_length=512)


class Toc(_Strict):
    format: Literal["pallet-export"]
    format_version: int
    export_id: str = Field(max_length=64)
    chunks: list[ChunkEntry] = Field(min_length=1, max_length=1_000_000)
    summary: Header
    signature: SignatureEntry | None = None


def check_shape(data: bytes, what: str, limit: int) -> None:
    """Refuse JSON of more than `limit` bytes, or with more values than `limit` allows,
    before it is decoded. Counts at C speed: strings, then what separates or opens values
    outside them (an upper bound of the values)."""
    if len(data) > limit:
        raise BadArchive(f"{what} has {len(data)} bytes, more than the limit of {limit}",
                         details={"member": what})
    outside, strings = _STRING.subn(b"", data)
    values = strings + outside.count(b",") + outside.count(b"[") + outside.count(b"{")
    if values > limit // BYTES_PER_VALUE:
        raise BadArchive(f"{what} holds more than {limit // BYTES_PER_VALUE} JSON values: it "
                         "is not Pallet metadata", details={"member": what})


def decode_json(data: bytes, what: str, limit: int) -> Any:
    """`data` decoded as JSON, once its size and shape are known to be bounded."""
    check_shape(data, what, limit)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad JSON, huge numbers, deep nesting
        raise BadArchive(f"{what} is not valid JSON: {str(exc)[:200]}",
                         details={"member": what}) from None


def check_version(version: object) -> None:
    # By type too: true == 1 and 1.0 == 1 in Python, but neither is a format version.
    if type(version) is not int or version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        shown = json.dumps(version)[:40] if _is_json_scalar(version) else "of another kind"
        raise BadArchive(f"the archive has format version {shown}; this Pallet reads "
                         f"format version {readable}", code="format_version",
                         details={"format_version": shown, "readable": list(READABLE_VERSIONS)})


def _is_json_scalar(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def parse(model: type[BaseModel], document: object, what: str):
    """`document` (decoded JSON) as `model`, or BadArchive saying what is wrong with it."""
    if isinstance(document, dict):
        check_version(document.get("format_version"))
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        summary, problems = validation_problems(exc.errors())
        raise BadArchive(f"the archive's {what} is not valid: {summary}",
                         details={"errors": problems[:20]}) from None
