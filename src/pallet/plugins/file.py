"""The `file` content type: a file at a relative path, identified by path and sha256.

Remotes and publications speak Pulp's file format: a `PULP_MANIFEST` of lines
`relative_path,sha256,size`, with the files at those paths beside it. So Pallet can mirror a
Pulp file distribution, and Pulp (or another Pallet) can mirror Pallet's.

The format is Pulp's exactly, which is not CSV: pulp_file splits a line at its last two
commas and strips each field, skips blank lines and lines starting with `#`, and writes the
fields raw. So a path may hold commas and quotes, but a path with leading or trailing
whitespace or a first character `#` could not travel: a file unit refuses it.
"""

from __future__ import annotations

import re
from typing import BinaryIO, Iterable, Iterator
from urllib.parse import quote, urljoin, urlsplit

from pydantic import field_validator

from pallet.plugin import (ContentType, Invalid, MetadataOutput, Plugin, PublishedUnit,
                           PublishOptions, RemoteFile, RemoteReader, RemoteUnit, RepositoryType,
                           UnitModel, validate_relative_path)

MANIFEST = "PULP_MANIFEST"
MAX_LINE = 8192
_HEX64 = re.compile("[0-9a-f]{64}")
MAX_SIZE = 2**50  # a petabyte: larger announced sizes are a broken or hostile manifest


class FileUnit(UnitModel):
    relative_path: str
    sha256: str

    @field_validator("relative_path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        value = validate_relative_path(value)
        if problem := _unfit_for_manifest(value):
            raise Invalid(f"relative_path {value[:100]!r} is not allowed: {problem}",
                          details={"field": "relative_path"})
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.lower()
        if not _HEX64.fullmatch(value):
            raise ValueError("sha256 must be 64 hexadecimal characters")
        return value


class FilePublishOptions(PublishOptions):
    manifest: str = MANIFEST

    @field_validator("manifest")
    @classmethod
    def _safe_manifest(cls, value: str) -> str:
        return validate_relative_path(value, what="manifest")


def _unfit_for_manifest(path: str) -> str | None:
    """Why `path` would not come back whole from a PULP_MANIFEST line, or None."""
    if path != path.strip():  # str.strip, as Pulp's: Unicode whitespace too
        return f"it has leading or trailing whitespace, which {MANIFEST} lines lose"
    if path.startswith("#"):
        return f"it starts with '#', which makes a {MANIFEST} line a comment"
    return None  # newlines and other control characters: validate_relative_path refuses


def _artifacts(unit: FileUnit) -> dict[str, str]:
    return {unit.relative_path: unit.sha256}


def read_remote(remote: RemoteReader) -> Iterator[RemoteUnit]:
    """The units of a remote: its URL names a manifest, or a folder holding a PULP_MANIFEST."""
    url = manifest_url(remote.url)
    with open(remote.fetch(url), "rb") as index:
        yield from read_manifest(index, url)


def manifest_url(remote_url: str) -> str:
    """The manifest a remote URL names: the URL itself, or the folder's PULP_MANIFEST when
    the URL ends in '/' (or has no path)."""
    parts = urlsplit(remote_url)
    if parts.path and not parts.path.endswith("/"):
        return remote_url
    return parts._replace(path=(parts.path or "/") + MANIFEST).geturl()


def read_manifest(index: BinaryIO, base_url: str) -> Iterator[RemoteUnit]:
    """Units from a PULP_MANIFEST. Every line is checked; the first bad one stops the sync."""
    seen: set[str] = set()
    # Bytes up to each \n, decoded one line at a time: line numbers stay exact, a huge line
    # is refused without being held, and only \n (or \r\n) ends a line, as in Pulp's text
    # mode; str.splitlines would also end one at U+2028 and such, which a path may hold.
    lines = iter(lambda: index.readline(MAX_LINE + 1), b"")
    for number, raw in enumerate(lines, start=1):
        if len(raw) > MAX_LINE:
            raise _bad(number, f"the line is longer than {MAX_LINE} bytes")
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise _bad(number, "the line is not UTF-8 text") from None
        if not text or text.startswith("#"):
            continue
        yield _remote_unit(number, text, base_url, seen)


def _remote_unit(number: int, text: str, base_url: str, seen: set[str]) -> RemoteUnit:
    """The unit of one manifest line, split as Pulp splits it: at its last two commas."""
    fields = [field.strip() for field in text.rsplit(",", 2)]
    if len(fields) != 3:
        raise _bad(number, "expected 'relative_path,sha256,size'")
    path, sha256, size_text = fields
    try:
        unit = FileUnit(relative_path=path, sha256=sha256)
    except Exception as exc:  # pydantic's ValidationError or Invalid from the path
        raise _bad(number, _first_error(exc)) from None
    if not (size_text.isascii() and size_text.isdigit()) or int(size_text) > MAX_SIZE:
        raise _bad(number, f"size {size_text[:30]!r} is not a number of bytes")
    if unit.relative_path in seen:
        raise _bad(number, f"the path {unit.relative_path!r} is listed twice")
    seen.add(unit.relative_path)
    url = urljoin(base_url, quote(unit.relative_path))
    return RemoteUnit(type="file", fields=unit.model_dump(),
                      files={unit.relative_path: RemoteFile(url, unit.sha256, int(size_text))})


def _bad(number: int, reason: str) -> Invalid:
    return Invalid(f"{MANIFEST} line {number}: {reason}", details={"line": number})


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return getattr(exc, "message", str(exc))


def publish_manifest(units: Iterable[PublishedUnit], options: FilePublishOptions,
                     output: MetadataOutput) -> None:
    """Lines as Pulp writes them: the fields raw, never quoted."""
    with output.open(options.manifest) as manifest:
        for unit in units:
            for file in unit.files:
                # A unit recorded before paths were checked for this could not travel.
                if problem := _unfit_for_manifest(file.relative_path):
                    raise Invalid(f"{file.relative_path[:100]!r} cannot be published in a "
                                  f"{MANIFEST}: {problem}",
                                  details={"relative_path": file.relative_path})
                manifest.write(f"{file.relative_path},{file.sha256},{file.size or 0}\n"
                               .encode())


plugin = Plugin(
    name="file",
    description="Plain files at relative paths.",
    content_types=(ContentType(name="file", model=FileUnit,
                               key_fields=("relative_path", "sha256"), artifacts=_artifacts,
                               repository_key=("relative_path",)),),
    repository_types=(RepositoryType(name="file", content_types=("file",),
                                     description="A repository of plain files.",
                                     read_remote=read_remote,
                                     publish_options=FilePublishOptions,
                                     publish=publish_manifest),),
)
