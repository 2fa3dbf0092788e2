"""NEVRA text both ways (name, epoch, version, release, arch): `name-[epoch:]version-release.arch`
as rpm and dnf write it, for the CLI's arguments and the API's compact listings."""

from __future__ import annotations


def nevra_text(name: str, epoch: str, version: str, release: str, arch: str) -> str:
    """`name-[epoch:]version-release.arch`, as rpm and dnf write it (no epoch when 0)."""
    shown = "" if epoch in ("0", "", None) else f"{epoch}:"
    return f"{name}-{shown}{version}-{release}.{arch}"


def parse_nevra(text: str) -> dict[str, str]:
    """The fields of `name-[epoch:]version-release.arch`, or ValueError."""
    rest, dot, arch = text.rpartition(".")
    rest, dash, release = rest.rpartition("-")
    name, dash2, version = rest.rpartition("-")
    if not (dot and dash and dash2 and name and version and release and arch):
        raise ValueError(f"{text!r} is not a NEVRA (name-[epoch:]version-release.arch)")
    epoch, colon, plain = version.partition(":")
    return {"name": name, "epoch": epoch if colon else "0",
            "version": plain if colon else version, "release": release, "arch": arch}
