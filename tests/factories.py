"""Small builders for tests: stored artifacts and file units, made through the services."""

from __future__ import annotations

import hashlib

from pallet.artifacts.service import record_artifact
from pallet.content.service import create_content


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
