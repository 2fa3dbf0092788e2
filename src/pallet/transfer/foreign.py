"""Naming what a file is when it is not a Pallet archive: a Pulp export, or no archive at
all. Without this, a Pulp `-toc.json` or a few bytes of junk read as a tar stream that ends
early, and the error said "truncated", which sent people looking for a missing piece.

How a Pulp export lies on disk (pulpcore 3): `export-<uuid>-<stamp>.tar` (or `.tar.0000`…),
whose first member is `versions.json`, and `export-<uuid>-<stamp>-toc.json` holding
`{"meta": {"checksum_type": …}, "files": {"<chunk>": "<crc32>"}}`.
"""

from __future__ import annotations

from typing import Any

from pallet.transfer.tarstream import BLOCK, BadArchive, checksum_matches

PULP_FIRST_MEMBER = "versions.json"
_ONLY_PALLET = ("a Pulp export; Pallet reads Pallet archives, written by `pallet exporter "
                "run` or `pallet exporter stream`")


def pulp_export(what: str) -> BadArchive:
    return BadArchive(f"this is {_ONLY_PALLET} ({what})", code="pulp_export")


def not_an_archive(why: str) -> BadArchive:
    return BadArchive(f"this is not an archive: {why}", code="not_an_archive")


def is_pulp_toc(document: Any) -> bool:
    """Pulp's table of contents has `files` and `meta`; Pallet's has `chunks` and
    `summary`."""
    return isinstance(document, dict) and "files" in document and "chunks" not in document


def identify(head: bytes) -> BadArchive | None:
    """What a stream whose first member could not be read is, from its first bytes (at most
    one tar block); None when they are a tar header, so the tar's own error stands."""
    if not head:
        return not_an_archive("it is empty")
    if head.lstrip().startswith(b"{"):
        if b'"files"' in head or b'"checksum_type"' in head:
            return pulp_export("its table of contents, a -toc.json")
        return not_an_archive("it is JSON; a Pallet table of contents is named *.toc.json "
                              "and lists its chunks")
    if len(head) < BLOCK:
        return not_an_archive(f"its {len(head)} bytes are too few for a tar archive")
    if not checksum_matches(head):
        return not_an_archive("its first bytes are not a tar header (a later chunk of a "
                              "split archive starts in the middle, too)")
    return None


def first_member(name: str) -> BadArchive | None:
    """A tar archive whose first member says it is someone else's."""
    if name == PULP_FIRST_MEMBER:
        return pulp_export(f"its first member is {PULP_FIRST_MEMBER}")
    return None
