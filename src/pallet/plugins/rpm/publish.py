"""Publishing a yum repository with createrepo_c: primary, filelists and other metadata
(optionally their sqlite databases), the advisories' updateinfo, comps.xml (records `group`
and `group_gz`, as modifyrepo_c writes them) and modules.yaml under `repodata/`, named by
their sha256 as createrepo_c names them, and the repomd.xml that lists them with the records
of the files kept verbatim (metadata.py). Packages and kept files are served where their
units lie (`Packages/<letter>/…`, `repodata/<name>`), so only metadata is written.

The metadata is written a package at a time into files in a temporary folder (createrepo_c
writes to paths), then copied into the store; the package count is stated up front, as
primary.xml's `packages="N"` needs. repomd.xml's revision and timestamps are the time of
publishing, as createrepo_c writes them, so tools that compare them (mirror checks, reposync)
see each publication as newer than the last; the newest package's time would not grow when a
version removes packages. Advisories, comps, modules and kept records are few (thousands, not
millions) and held in memory until the packages are written.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

import createrepo_c as cr

from pallet.plugin import (GeneratedFile, MetadataOutput, PublishedUnits, PublishOptions,
                           ServedRepository)
from pallet.plugins.rpm import advisory, comps, metadata, modules
from pallet.plugins.rpm.package import TYPE, to_createrepo

COMPRESSION = {"gz": cr.GZ, "xz": cr.XZ, "bz2": cr.BZ2, "zstd": cr.ZSTD}
SUFFIX = {"gz": ".gz", "xz": ".xz", "bz2": ".bz2", "zstd": ".zst"}
WRITERS = {"primary": cr.PrimaryXmlFile, "filelists": cr.FilelistsXmlFile,
           "other": cr.OtherXmlFile}
REPOMD = "repodata/repomd.xml"
SIGNATURE, KEY = REPOMD + ".asc", REPOMD + ".key"  # where dnf and createrepo users look


class RpmPublishOptions(PublishOptions):
    compression: Literal["gz", "xz", "bz2", "zstd"] = "gz"
    sqlite_metadata: bool = False  # also primary.sqlite and friends, for old yum clients


def publish(units: PublishedUnits, options: RpmPublishOptions, output: MetadataOutput) -> None:
    with tempfile.TemporaryDirectory(prefix="pallet-rpm-") as folder:
        others: dict[str, list] = {}
        written = _write_metadata(Path(folder), units, options, others)
        now = int(time.time())
        repomd = cr.Repomd()
        for record in _records(written, options):
            record.set_timestamp(now)
            repomd.set_record(record)
            with open(record.location_real, "rb") as source, \
                    output.open(record.location_href) as target:
                shutil.copyfileobj(source, target, 1 << 20)
        for fields in others.get(metadata.TYPE, ()):
            repomd.set_record(metadata.record_of(fields, now))
        repomd.set_revision(str(now))
        xml = repomd.xml_dump().encode()
        with output.open(REPOMD) as target:
            target.write(xml)
        if output.signer is not None:
            _sign(xml, output)


def _write_metadata(folder: Path, units: PublishedUnits, options: RpmPublishOptions,
                    others: dict[str, list]) -> dict[str, Path]:
    """primary, filelists and other (and their databases) for every package, updateinfo,
    comps.xml and modules.yaml: {kind: path}. The fields of units of other types are put in
    `others`, by type."""
    suffix = SUFFIX[options.compression]
    paths = {kind: folder / f"{kind}.xml{suffix}" for kind in WRITERS}
    writers = {kind: WRITERS[kind](str(path), COMPRESSION[options.compression])
               for kind, path in paths.items()}
    databases = {}
    if options.sqlite_metadata:
        databases = {"primary": cr.PrimarySqlite(str(folder / "primary.sqlite")),
                     "filelists": cr.FilelistsSqlite(str(folder / "filelists.sqlite")),
                     "other": cr.OtherSqlite(str(folder / "other.sqlite"))}
    count = units.counts.get(TYPE, 0)
    for writer in writers.values():
        writer.set_num_of_pkgs(count)
    adders = [one.add_pkg for one in (*writers.values(), *databases.values())]
    for unit in units:
        if unit.type != TYPE:
            others.setdefault(unit.type, []).append(unit.fields)
            continue
        package = to_createrepo(unit.fields)
        for add in adders:
            add(package)
    for writer in writers.values():
        writer.close()
    for database in databases.values():
        database.dbinfo_update("")  # the checksum field old yum compared; not used by dnf
        database.close()
    written = paths | {f"{kind}_db": folder / f"{kind}.sqlite" for kind in databases}
    if others.get(advisory.TYPE):
        written["updateinfo"] = folder / "updateinfo.xml"
        written["updateinfo"].write_text(advisory.updateinfo(
            sorted(others[advisory.TYPE], key=lambda fields: fields["id"])))
    if any(others.get(kind) for kind in comps.TYPES):
        written["group"] = folder / "comps.xml"
        written["group"].write_text(comps.comps_xml(_of(others, comps.TYPES)))
    if any(others.get(kind) for kind in modules.TYPES):
        written["modules"] = folder / "modules.yaml"
        written["modules"].write_text(modules.modules_yaml(_of(others, modules.TYPES)))
    return written


def _of(others: dict[str, list], types: tuple[str, ...]) -> list[tuple[str, dict]]:
    return [(kind, fields) for kind in types for fields in others.get(kind, ())]


def _records(written: dict[str, Path], options: RpmPublishOptions) -> list[cr.RepomdRecord]:
    """The repomd records of the written files; comps.xml is listed twice, as is and
    gzipped (`group_gz`), as createrepo_c and modifyrepo_c list it."""
    records = []
    if "group" in written:  # compressed before the plain file is renamed
        gzipped = cr.RepomdRecord("group", str(written["group"])).compress_and_fill(
            cr.SHA256, cr.GZ)
        gzipped.type = "group_gz"
        gzipped.rename_file()
        records.append(gzipped)
    return [_record(kind, path, options) for kind, path in written.items()] + records


def _record(kind: str, path: Path, options: RpmPublishOptions) -> cr.RepomdRecord:
    """The repomd record of one written file, renamed to `<sha256>-<name>` as createrepo_c
    names them (a sqlite database, updateinfo or modules.yaml is compressed first)."""
    record = cr.RepomdRecord(kind, str(path))
    if kind.endswith("_db") or kind in ("updateinfo", "modules"):
        record = record.compress_and_fill(cr.SHA256, COMPRESSION[options.compression])
        record.type = kind
    else:
        record.fill(cr.SHA256)
    record.rename_file()
    return record


# -- signing and config.repo ------------------------------------------------------------------

def _sign(repomd: bytes, output: MetadataOutput) -> None:
    """repomd.xml.asc, the detached signature dnf checks with repo_gpgcheck=1, and
    repomd.xml.key, the public key config.repo names as gpgkey (dnf imports it, with the
    user's consent, before checking)."""
    with output.open(SIGNATURE) as target:
        target.write(output.signer.sign(repomd))
    with output.open(KEY) as target:
        target.write(output.signer.public_key())


def config_repo(served: ServedRepository) -> bytes | None:
    """A dnf repo file for the distribution (`dnf config-manager --add-repo URL/config.repo`),
    or None where no yum metadata is served (a version served bare). gpgcheck=0: Pallet
    does not sign packages, and which vendors' keys to trust for them is the user's to
    configure; repo_gpgcheck=1 (repomd.xml's signature) when the publication is signed."""
    if REPOMD not in served.metadata:
        return None
    lines = [f"[{served.distribution}]",
             f"name={served.distribution} (Pallet repository {served.repository})",
             f"baseurl={served.url}", "enabled=1", "gpgcheck=0"]
    if SIGNATURE in served.metadata:
        lines.append("repo_gpgcheck=1")
        if KEY in served.metadata:
            lines.append(f"gpgkey={served.url}{KEY}")
    return ("\n".join(lines) + "\n").encode()


GENERATED_FILES = {"config.repo": GeneratedFile(config_repo)}
