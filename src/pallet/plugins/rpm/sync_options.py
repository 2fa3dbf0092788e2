"""The rpm type's sync options, and which of a yum repository's packages they let a sync take.

- `skip_types: ["srpm"]` leaves out source packages (arch `src` or `nosrc`).
- `retain_package_versions: N` keeps, of each name and arch, the N newest versions in rpm's
  order (`evr.EVR`: epoch, version, release); builds of one version count once.

Advisories are never left out: they describe packages, and a client asks for them whatever
it installs. Keeping the newest N takes two passes over primary.xml: the first keeps, per
(name, arch), only the N newest EVRs met so far, so memory grows with the number of package
names, never with the number of packages; the second, the sync's own, yields a package when
it is at least as new as the oldest of its N.
"""

from __future__ import annotations

import bisect
from typing import Callable, Literal

import createrepo_c as cr
from pydantic import Field, StrictInt, field_validator

from pallet.plugin import Invalid, SyncOptions
from pallet.plugins.rpm.evr import EVR

SOURCE_ARCHES = frozenset({"src", "nosrc"})


class RpmSyncOptions(SyncOptions):
    skip_types: list[Literal["srpm"]] = Field(
        [], max_length=10, description="Kinds of package left out: srpm (source packages).")
    retain_package_versions: StrictInt | None = Field(  # strict: `true` is not 1
        None, ge=1, le=100_000, description="Keep only the newest N versions of each "
                                            "package name and arch (none: every version).")

    @field_validator("skip_types")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


def package_filter(options: RpmSyncOptions, primary: str, where: str
                   ) -> Callable[[cr.Package], bool] | None:
    """Whether the sync takes a package (as createrepo_c parses it), by `options`; None
    when it takes every one. With `retain_package_versions`, this reads `primary` (the
    decompressed primary.xml, which `where` names in errors) once first."""
    skipped = SOURCE_ARCHES if "srpm" in options.skip_types else frozenset()
    retain = options.retain_package_versions
    if not skipped and retain is None:
        return None
    oldest = _oldest_kept(primary, where, retain, skipped) if retain is not None else {}

    def wanted(package: cr.Package) -> bool:
        if package.arch in skipped:
            return False
        if retain is None:
            return True
        floor = oldest.get((package.name, package.arch))
        return floor is None or _evr(package, where) >= floor

    return wanted


def _oldest_kept(primary: str, where: str, retain: int,
                 skipped: frozenset[str]) -> dict[tuple[str, str], EVR]:
    """(name, arch) -> the oldest of its `retain` newest EVRs in primary.xml."""
    newest: dict[tuple[str, str], list[EVR]] = {}  # ascending, at most `retain` long

    def seen(package: cr.Package) -> bool:
        if package.arch not in skipped:
            _keep(newest.setdefault((package.name, package.arch), []),
                  _evr(package, where), retain)
        return True  # go on

    try:
        cr.xml_parse_primary(primary, pkgcb=seen, do_files=False, warningcb=_warning)
    except (cr.CreaterepoCError, ValueError) as exc:
        raise Invalid(f"{where} cannot be read: {exc}") from None
    return {key: evrs[0] for key, evrs in newest.items()}


def _keep(evrs: list[EVR], evr: EVR, retain: int) -> None:
    at = bisect.bisect_left(evrs, evr)
    if at < len(evrs) and evrs[at] == evr:
        return  # another build of a version kept already
    evrs.insert(at, evr)
    if len(evrs) > retain:
        del evrs[0]


def _evr(package: cr.Package, where: str) -> EVR:
    epoch = package.epoch or "0"
    if not (epoch.isascii() and epoch.isdigit()) or len(epoch) > 10:
        raise Invalid(f"package {package.nevra()!r:.200} in {where}: epoch: must be a number",
                      details={"field": "epoch"})
    return EVR(epoch, package.version or "", package.release or "")


def _warning(kind, message) -> bool:
    return True  # as in remote.py: createrepo_c's warnings are not errors here
