"""Reading a yum repository: repomd.xml, then the primary, filelists and other metadata it
names, each checked against the checksum and size repomd.xml gives and decompressed within
the core's limit, then read together a package at a time by createrepo_c's parser, so memory
stays bounded whatever the repository's size; then its advisories (updateinfo), comps
(group_gz, else group), modules, and every other file repomd.xml names, kept verbatim
(metadata.py), each of them if present.

What cannot be mirrored faithfully is refused with a sentence rather than guessed at: a
package whose location leaves the repository (`../`, another host, an `xml:base`).

A package announced by another checksum than sha256 only (sha1 or md5, in old repositories)
has a sha256, which Pallet stores it by and which is its `pkgid`, that nobody knows before
its bytes are fetched: its `RemoteFile` carries the announced checksum and no sha256, and its
unit is completed with the sha256 once the core fetched and verified it (immediate policy
only; the core refuses the others with a sentence). Its unit is then the one upstream would
have announced by sha256, and a publication announces it by sha256.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

import createrepo_c as cr

from pallet.plugin import Checksum, Invalid, RemoteFile, RemoteReader, RemoteUnit
from pallet.plugins.rpm import advisory, comps, metadata, modules
from pallet.plugins.rpm.package import KEY, TYPE, checked, fields_of
from pallet.plugins.rpm.package import location as package_location
from pallet.plugins.rpm.sync_options import package_filter

REPOMD = "repodata/repomd.xml"
UNKNOWN = "0" * 64  # the pkgid of a package announced by sha1 or md5, until it is fetched
MAIN_METADATA = ("primary", "filelists", "other")


def read_remote(remote: RemoteReader) -> Iterator[RemoteUnit]:
    records = _records(remote, remote.fetch(REPOMD, fingerprint=True))
    for kind in MAIN_METADATA:
        if kind not in records:
            raise Invalid(f"{remote.resolve(REPOMD)} names no {kind} metadata")
    # The three fetched together: checking and decompressing them is most of their time,
    # and zlib and hashlib let go of the GIL while they work.
    with ThreadPoolExecutor(len(MAIN_METADATA), thread_name_prefix="metadata") as pool:
        fetched = [pool.submit(_fetch, remote, records[kind]) for kind in MAIN_METADATA]
        paths = {kind: future.result() for kind, future in zip(MAIN_METADATA, fetched)}
    yield from _packages(remote, records, paths)
    if "updateinfo" in records:
        yield from _advisories(remote, records["updateinfo"])
    group = records.get("group_gz") or records.get("group")
    if group is not None:
        yield from _parsed(remote, group, comps.read)
    if "modules" in records:
        yield from _parsed(remote, records["modules"], modules.read)
    yield from _kept(remote, [r for r in records.values() if metadata.kept(r.type)])


def _fetch(remote: RemoteReader, record: cr.RepomdRecord) -> str:
    """A metadata file repomd.xml names, verified and decompressed: its local path."""
    href = _metadata_href(remote, record)
    return str(remote.fetch(href, checksum=Checksum(record.checksum_type or "",
                                                    record.checksum or ""),
                            size=record.size or None, decompress=True))


def _advisories(remote: RemoteReader, record: cr.RepomdRecord) -> Iterator[RemoteUnit]:
    path, where = _fetch(remote, record), remote.resolve(record.location_href or "")
    info = cr.UpdateInfo()
    try:
        cr.xml_parse_updateinfo(path, info, _warning)
    except (cr.CreaterepoCError, ValueError) as exc:
        raise Invalid(f"{where} cannot be read: {exc}") from None
    for update in info.updates:
        unit = advisory.checked(advisory.fields_of(update), where)
        yield RemoteUnit(type=advisory.TYPE, fields=unit, files={})


def _parsed(remote: RemoteReader, record: cr.RepomdRecord, read) -> Iterator[RemoteUnit]:
    """The units of a comps or modules file, by `read(path, where)`."""
    path, where = _fetch(remote, record), remote.resolve(record.location_href or "")
    for kind, unit in read(Path(path), where):
        yield RemoteUnit(type=kind, fields=unit, files={})


def _kept(remote: RemoteReader, records: list[cr.RepomdRecord]) -> Iterator[RemoteUnit]:
    """A unit for each file Pallet keeps verbatim, to be fetched by the core as a package
    is. A file announced by another checksum than sha256 is fetched here first (verified by
    what repomd.xml announces) to learn its sha256; these files are small."""
    where, seen = remote.resolve(REPOMD), {}
    for record in sorted(records, key=lambda r: r.type):
        href = _metadata_href(remote, record)
        location = metadata.location_of(record, where)
        if location in seen:
            raise Invalid(f"{where} names one file, {location[:200]!r}, for both its "
                          f"{seen[location][:100]} and {record.type[:100]} metadata")
        seen[location] = record.type
        if (record.checksum_type or "").lower() == "sha256" and record.size:
            sha256, size = (record.checksum or "").lower(), record.size
        else:
            sha256, size = metadata.sha256_of(remote.fetch(href, checksum=Checksum(
                record.checksum_type or "", record.checksum or ""), size=record.size or None))
        unit = metadata.unit_of(record, location, sha256, size, where)
        yield RemoteUnit(type=metadata.TYPE, fields=unit,
                         files={unit.relative_path: RemoteFile(remote.resolve(href), sha256,
                                                               size)})


def _packages(remote: RemoteReader, records, paths) -> Iterator[RemoteUnit]:
    where = remote.resolve(records["primary"].location_href)
    base = remote.resolve("")
    wanted = package_filter(remote.options, paths["primary"], where)  # the sync options
    try:
        for package in cr.PackageIterator(paths["primary"], paths["filelists"],
                                          paths["other"], warningcb=_warning):
            if wanted is None or wanted(package):
                yield _unit(remote, base, package, where)
    except cr.CreaterepoCError as exc:
        raise Invalid(f"{where} cannot be read: {exc}") from None


def _records(remote: RemoteReader, path) -> dict[str, cr.RepomdRecord]:
    repomd = cr.Repomd()
    try:
        cr.xml_parse_repomd(str(path), repomd, _warning)
    except (cr.CreaterepoCError, ValueError) as exc:
        raise Invalid(f"{remote.resolve(REPOMD)} is not a repomd.xml: {exc}") from None
    return {record.type: record for record in repomd.records}


def _warning(kind, message) -> bool:
    return True  # createrepo_c's warnings (unknown elements and such) are not errors here


def _metadata_href(remote: RemoteReader, record: cr.RepomdRecord) -> str:
    href = record.location_href or ""
    if record.location_base or not _inside(remote.resolve(""), remote.resolve(href)):
        raise Invalid(f"repomd.xml places its {record.type} metadata outside the repository "
                      f"({(record.location_base or '') + href!r:.200})")
    return href


def _unit(remote: RemoteReader, base: str, package: cr.Package, where: str) -> RemoteUnit:
    if package.location_base:
        raise Invalid(f"package {package.nevra()} in {where} lies elsewhere (xml:base "
                      f"{package.location_base[:200]!r}); only packages inside the "
                      "repository can be mirrored")
    url = _package_url(remote, base, package.location_href or "")
    if url is None:
        raise Invalid(f"package {package.nevra()} in {where} has a location outside the "
                      f"repository ({(package.location_href or '')[:200]!r})")
    size = package.size_package or None
    if (package.checksum_type or "").lower() == "sha256":
        # Announced by its key: the fields are built and checked only for a package the
        # server does not hold (a re-sync's 99%). The key is what the model would store.
        key = {"name": package.name, "epoch": package.epoch or "0",
               "version": package.version, "release": package.release,
               "arch": package.arch, "pkgid": (package.pkgId or "").lower()}
        if not all(isinstance(value, str) and value for value in key.values()):
            unit = checked(fields_of(package), where)  # says which field is missing
            key = unit.model_dump(include=set(KEY))
        path = package_location(key["name"], key["version"], key["release"], key["arch"])
        return RemoteUnit(type=TYPE, fields=lambda: checked(fields_of(package), where),
                          files={path: RemoteFile(url, key["pkgid"], size)}, key=key)
    # Announced by sha1, md5...: the pkgid is the sha256 of the file, once fetched.
    announced = Checksum(package.checksum_type or "", package.pkgId or "")
    unit = checked({**fields_of(package), "pkgid": UNKNOWN}, where)
    location = unit.location
    return RemoteUnit(type=TYPE, fields=unit,
                      files={location: RemoteFile(url, "", size, checksum=announced)},
                      complete=lambda sha256s: unit.model_copy(
                          update={"pkgid": sha256s[location]}))


# A location that is plainly a path below the repository: its URL is the base's followed by
# it (urljoin and `_inside` cost half of a held package's time in a re-sync).
_PLAIN_HREF = re.compile(r"[A-Za-z0-9_+~^-][A-Za-z0-9._+~^/-]*")


def _package_url(remote: RemoteReader, base: str, href: str) -> str | None:
    """The URL of a package's location inside the repository (`base`, ending in /), None
    if it lies outside."""
    if _PLAIN_HREF.fullmatch(href) and "/." not in href and "//" not in href:
        return base + href
    url = remote.resolve(href)
    return url if href and _inside(base, url) else None


def _inside(base: str, url: str) -> bool:
    """Whether `url` is under the folder `base` (same scheme, host and path prefix), after
    the `..` segments urljoin already resolved, and with none left once percent-decoded
    (`%2e%2e/` is `../` to the server that answers)."""
    inner, outer = urlsplit(url), urlsplit(base)
    path = unquote(inner.path)
    return ((inner.scheme, inner.netloc) == (outer.scheme, outer.netloc)
            and inner.path.startswith(outer.path) and path.startswith(unquote(outer.path))
            and "/../" not in path + "/" and "/./" not in path + "/" and "\\" not in path)
