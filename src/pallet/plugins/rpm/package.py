"""An RPM package as a content unit: every field yum's primary, filelists and other metadata
hold of it, so a publication can write them again exactly (createrepo_c's `Package`).

Its natural key is name, epoch, version, release, arch and the package's sha256 (`pkgid`);
its repository key the first five (NEVRA): a version holds one build of each NEVRA. The file
lies at `Packages/<first letter of the name>/<name>-<version>-<release>.<arch>.rpm`, decided by
the key alone, so the same package has the same path on every server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import createrepo_c as cr
from pydantic import field_validator

from pallet.plugin import Invalid, UnitModel
from pallet.plugins.rpm.nevra import nevra_text

TYPE = "rpm.package"
NEVRA = ("name", "epoch", "version", "release", "arch")
KEY = (*NEVRA, "pkgid")
DEPENDENCIES = ("requires", "provides", "conflicts", "obsoletes", "suggests", "enhances",
                "recommends", "supplements")
# name, version, release and arch become parts of a path: letters, digits and RPM's own
# punctuation, never a slash or a leading dot.
_PART = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+~^-]{0,254}")
_HEX64 = re.compile("[0-9a-f]{64}")

# (name, flags, epoch, version, release, pre) as createrepo_c gives them
Dependency = tuple[str, str | None, str | None, str | None, str | None, bool]


class Package(UnitModel):
    name: str
    epoch: str = "0"
    version: str
    release: str
    arch: str
    pkgid: str  # the sha256 of the .rpm file
    summary: str = ""
    description: str = ""
    url: str | None = None
    license: str | None = None
    vendor: str | None = None
    group: str | None = None
    buildhost: str | None = None
    sourcerpm: str | None = None
    packager: str | None = None
    time_file: int = 0
    time_build: int = 0
    size_package: int = 0
    size_installed: int = 0
    size_archive: int = 0
    header_start: int = 0
    header_end: int = 0
    requires: list[Dependency] = []
    provides: list[Dependency] = []
    conflicts: list[Dependency] = []
    obsoletes: list[Dependency] = []
    suggests: list[Dependency] = []
    enhances: list[Dependency] = []
    recommends: list[Dependency] = []
    supplements: list[Dependency] = []
    files: list[tuple[str | None, str, str]] = []  # (type: None, "dir" or "ghost"; dir; name)
    changelogs: list[tuple[str, int, str]] = []  # (author, date, text)

    @field_validator("name", "version", "release", "arch")
    @classmethod
    def _path_part(cls, value: str) -> str:
        if not _PART.fullmatch(value):
            raise ValueError("must be letters, digits and ._+~^- (no slash, no leading dot)")
        return value

    @field_validator("epoch")
    @classmethod
    def _epoch(cls, value: str) -> str:
        value = value or "0"
        if not (value.isascii() and value.isdigit()) or len(value) > 10:
            raise ValueError("must be a number")
        return value

    @field_validator("pkgid")
    @classmethod
    def _sha256(cls, value: str) -> str:
        value = value.lower()
        if not _HEX64.fullmatch(value):
            raise ValueError("must be a sha256: 64 hexadecimal characters")
        return value

    @property
    def location(self) -> str:
        return location(self.name, self.version, self.release, self.arch)

    @property
    def nevra(self) -> str:
        return nevra_text(self.name, self.epoch, self.version, self.release, self.arch)


def location(name: str, version: str, release: str, arch: str) -> str:
    """Where a package lies in a published repository (Pulp's layout too)."""
    return f"Packages/{name[0].lower()}/{name}-{version}-{release}.{arch}.rpm"


def artifacts(package: Package) -> dict[str, str]:
    return {package.location: package.pkgid}


# -- createrepo_c's Package, both ways ------------------------------------------------------

_SCALARS = {"name": "name", "version": "version", "release": "release", "arch": "arch",
            "summary": "summary", "description": "description", "url": "url",
            "license": "rpm_license", "vendor": "rpm_vendor", "group": "rpm_group",
            "buildhost": "rpm_buildhost", "sourcerpm": "rpm_sourcerpm",
            "packager": "rpm_packager", "time_file": "time_file", "time_build": "time_build",
            "size_package": "size_package", "size_installed": "size_installed",
            "size_archive": "size_archive", "header_start": "rpm_header_start",
            "header_end": "rpm_header_end"}


def fields_of(package: cr.Package) -> dict[str, Any]:
    """A unit's fields from createrepo_c's package (parsed metadata or an .rpm header)."""
    fields: dict[str, Any] = {ours: getattr(package, theirs) for ours, theirs in _SCALARS.items()}
    fields = {name: value for name, value in fields.items() if value is not None}
    fields["epoch"] = package.epoch or "0"
    fields["pkgid"] = package.pkgId or ""
    for name in DEPENDENCIES:
        fields[name] = [tuple(d) for d in getattr(package, name) or ()]
    fields["files"] = [tuple(f[:3]) for f in package.files or ()]
    fields["changelogs"] = [tuple(c) for c in package.changelogs or ()]
    return fields


# Every field of a unit that createrepo_c's Package takes as it is, and those it takes as a
# list of tuples (JSON gives lists).
_AS_IS = {**_SCALARS, "epoch": "epoch", "pkgid": "pkgId"}
_TUPLES = frozenset((*DEPENDENCIES, "files", "changelogs"))


def to_createrepo(fields: dict[str, Any]) -> cr.Package:
    """createrepo_c's package for writing metadata, from a unit's fields. One pass over the
    fields, and an empty list left as a new Package has it: a publication calls this for
    every package, and this way costs half of a pass over every attribute (19 us a package
    against 36)."""
    package = cr.Package()
    assign = package.__setattr__
    for name, value in fields.items():
        attribute = _AS_IS.get(name)
        if attribute is not None:
            if value is not None:
                assign(attribute, value)
        elif value and name in _TUPLES:  # createrepo_c's setter stores a list reversed
            assign(name, list(map(tuple, reversed(value))))
    if not package.epoch:
        package.epoch = "0"
    package.checksum_type = "sha256"
    package.location_href = location(fields["name"], fields["version"], fields["release"],
                                     fields["arch"])
    return package


def from_file(path: Path, sha256: str) -> dict[str, Any]:
    """The unit of an uploaded .rpm file, from its header (nobody types a NEVRA by hand)."""
    try:
        package = cr.package_from_rpm(str(path), checksum_type=cr.SHA256)
    except (OSError, cr.CreaterepoCError) as exc:
        reason = str(exc).replace(f"Cannot load {path}: ", "")  # not the server's paths
        raise Invalid(f"the file is not an RPM package whose header can be read ({reason})",
                      details={"sha256": sha256}) from None
    package.pkgId = sha256  # what the store verified, the same digest createrepo_c computes
    return checked(fields_of(package), "the uploaded file").model_dump(mode="json")


def checked(fields: dict[str, Any], where: str) -> Package:
    """The package of `fields`, or Invalid saying which package in `where` is wrong."""
    name = f"{fields.get('name')}-{fields.get('version')}-{fields.get('release')}"
    return validated(Package, fields, f"package {name[:200]!r} in {where}")


def validated(model: type[UnitModel], fields: dict[str, Any], what: str):
    """`fields` as `model`, or Invalid naming the unit (`what`) and its first wrong field."""
    try:
        return model.model_validate(fields)
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
        field = ".".join(str(p) for p in first["loc"])
        raise Invalid(f"{what}: {field}: {first['msg']}", details={"field": field}) from None
