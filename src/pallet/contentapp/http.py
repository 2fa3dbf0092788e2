"""HTTP details of serving files, as pure functions: byte ranges, conditional requests,
dates, content types and the request's origin. No I/O here, so every rule is tested on its
own."""

from __future__ import annotations

import functools
import mimetypes
import re
from email.utils import formatdate, parsedate_to_datetime

from pallet.settings import HOST_PORT

# Cache-Control values: content behind a fixed target never changes under its URL; metadata,
# listings and whatever a repository's next publication may replace are re-checked soon.
IMMUTABLE = b"public, max-age=31536000, immutable"
SHORT = b"public, max-age=60"

# parse_range's answer when the range cannot be served (416).
UNSATISFIABLE = "unsatisfiable"

# A compressed file is served as what it is, never with Content-Encoding: clients must store
# the bytes whose digest the repository lists, not unpack them on the way.
_ENCODED_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
                  "xz": "application/x-xz", "br": "application/x-brotli",
                  "compress": "application/x-compress"}


_HOST_PORT = re.compile(HOST_PORT.encode(), re.ASCII)


def request_origin(scheme: str, host: bytes | None, configured: str) -> str | None:
    """The origin (scheme://host[:port]) the client reached the content app at, for URLs
    written into generated files: the `content_origin` setting when set, else the request's
    scheme and Host header, if that is a plain host[:port]. None: no trustworthy origin (a
    missing Host, or one that could smuggle text into a file)."""
    if configured:
        return configured
    if host is None or _HOST_PORT.fullmatch(host) is None:
        return None
    port = host.rpartition(b":")[2] if not host.endswith(b"]") else b""
    if b":" in host and port.isdigit() and not 0 < int(port) < 65536:
        return None  # a port no server listens on: not where the client reached us
    if scheme not in ("http", "https"):
        scheme = "http"
    return f"{scheme}://{host.decode('ascii')}"


def content_type(name: str) -> bytes:
    # The type depends on the last two suffixes only (a type, then perhaps an encoding):
    # remembered by them, as a fleet asks for many names of few kinds.
    last = name.rfind(".")
    before = name.rfind(".", 0, last) if last > 0 else -1
    return _content_type(name[before:] if before >= 0 else name[last:] if last >= 0 else "")


@functools.lru_cache(maxsize=1024)
def _content_type(suffixes: str) -> bytes:
    kind, encoding = mimetypes.guess_type("file" + suffixes, strict=False)
    if encoding is not None:
        kind = _ENCODED_TYPES.get(encoding, "application/octet-stream")
    return (kind or "application/octet-stream").encode("ascii")


@functools.lru_cache(maxsize=1024)
def http_date(timestamp: float) -> bytes:
    # One source's files share their date: remembered, as formatting it costs a request.
    return formatdate(timestamp, usegmt=True).encode("ascii")


def parse_http_date(value: bytes) -> float | None:
    try:
        parsed = parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed.timestamp()


def etag(sha256: str) -> bytes:
    return b'"' + sha256.encode("ascii") + b'"'


def parse_range(value: bytes, size: int) -> tuple[int, int] | str | None:
    """The inclusive (first, last) byte positions a Range header asks for; UNSATISFIABLE; or
    None when the whole file is to be sent (no, several, or malformed ranges)."""
    text = value.decode("latin-1").strip()
    unit, sep, spec = text.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not _digits(first_text, last_text):
        return None
    if not first_text:  # "-n": the last n bytes
        if not last_text:
            return None
        length = int(last_text)
        if length == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - length), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # syntactically invalid: ignored, the whole file is sent
    if first >= size:
        return UNSATISFIABLE
    return first, min(int(last_text), size - 1) if last_text else size - 1


def _digits(*texts: str) -> bool:
    return all(t == "" or (t.isascii() and t.isdigit()) for t in texts)


def etag_matches(header: bytes, tag: bytes) -> bool:
    """If-None-Match: weak comparison against any listed tag, or '*'."""
    for candidate in header.split(b","):
        candidate = candidate.strip()
        if candidate == b"*":
            return True
        if candidate.startswith(b"W/"):
            candidate = candidate[2:]
        if candidate == tag:
            return True
    return False


def not_modified(*, if_none_match: bytes | None, if_modified_since: bytes | None,
                 tag: bytes, last_modified: float) -> bool:
    """Whether a GET or HEAD gets 304. If-None-Match, when present, decides alone."""
    if if_none_match is not None:
        return etag_matches(if_none_match, tag)
    if if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        return since is not None and int(last_modified) <= since
    return False


def range_applies(if_range: bytes | None, *, tag: bytes, last_modified: float) -> bool:
    """If-Range: the range is honoured only if the client's copy is the current one (strong
    ETag match, or exactly the Last-Modified date); otherwise the whole file is sent."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(b'"') or value.startswith(b"W/"):
        return value == tag
    since = parse_http_date(value)
    return since is not None and since == int(last_modified)
