"""Small builders for tests: stored artifacts and file units, made through the services."""

from __future__ import annotations

import hashlib

from pallet.artifacts.service import record_artifact
from pallet.content.bulk import NewUnit
from pallet.content.identity import identity_digest
from pallet.content.service import create_content
from pallet.plugins.rpm import advisory, package


def store_bytes(runtime, data: bytes) -> str:
    with runtime.storage.writer() as writer:
        writer.write(data)
        sha256 = writer.commit()
    with runtime.db.write() as session:
        record_artifact(session, sha256=sha256, size=len(data))
    return sha256


def make_files(runtime, count: int, prefix: str = "f") -> list[int]:
    """`count` file units with distinct bytes; returns their content ids."""
    ids = []
    with runtime.db.write() as session:
        for i in range(count):
            data = f"{prefix}-{i}".encode()
            sha256 = hashlib.sha256(data).hexdigest()
            with runtime.storage.writer() as writer:
                writer.write(data)
                writer.commit()
            record_artifact(session, sha256=sha256, size=len(data))
            content, _ = create_content(session, runtime.plugins, type="file",
                                        fields={"relative_path": f"{prefix}/{i}.txt",
                                                "sha256": sha256})
            session.flush()
            ids.append(content.id)
    return ids


def file_unit(runtime, path: str, data: bytes) -> int:
    """A file unit at `path` whose bytes are stored; its content id."""
    sha256 = store_bytes(runtime, data)
    with runtime.db.write() as session:
        content, _ = create_content(session, runtime.plugins, type="file",
                                    fields={"relative_path": path, "sha256": sha256})
        session.flush()
        return content.id


def rpm_package(name, version="1.0", release="1", arch="x86_64", build="", **fields):
    """A package unit to record (its file not stored: as on-demand syncs leave them)."""
    pkgid = hashlib.sha256(f"{name}-{version}-{release}.{arch}{build}".encode()).hexdigest()
    fields = package.Package(name=name, version=version, release=release, arch=arch,
                             pkgid=pkgid, **fields).model_dump(mode="json")
    return new_unit(package.TYPE, package.KEY, fields,
                     ((package.location(name, version, release, arch), pkgid, 10),))


def rpm_advisory(id_, *names):
    """An advisory naming version 1.0-1.x86_64 of the packages `names`."""
    packages = [{"name": n, "epoch": "0", "version": "1.0", "release": "1", "arch": "x86_64"}
                for n in names]
    fields = advisory.Advisory(id=id_, collections=[{"name": "c", "packages": packages}]
                               ).model_dump(mode="json")
    return new_unit(advisory.TYPE, advisory.FIELDS, fields, ())


def new_unit(type_, key, fields, files):
    """A unit to record with `record_units`, its identity from the `key` fields."""
    return NewUnit(type_, identity_digest(type_, {k: fields[k] for k in key}), fields, files)
