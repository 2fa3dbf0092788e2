"""Tasks of uploads."""

from __future__ import annotations

import fcntl
import os

from pallet.artifacts.service import record_artifact
from pallet.runtime import Runtime
from pallet.tasks.registry import task_function
from pallet.uploads.service import check_complete, get_upload, upload_path


@task_function("upload.commit")
def commit_upload(runtime: Runtime, task, *, upload_id: int, sha256: str) -> None:
    """Check the upload is whole and has the expected digest; it becomes an artifact."""
    with runtime.db.read() as session:
        upload = get_upload(session, upload_id)
        check_complete(session, upload)
        size = upload.size
    task.progress("verifying", 0, size)
    path = upload_path(runtime.settings, upload_id)
    committing = path.with_name(f"{upload_id}.commit")
    os.replace(path, committing)  # no new chunk can open it now
    try:
        with open(committing, "rb") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # and chunks being written finish first
            digest, size = runtime.storage.ingest(
                committing, sha256, lambda done: task.progress("verifying", done, size))
    except BaseException:
        if committing.exists():  # refused: the upload stays, to be fixed or deleted
            os.replace(committing, path)
        raise
    with runtime.db.write() as session:
        artifact = record_artifact(session, sha256=digest, size=size)
        session.delete(get_upload(session, upload_id))
    task.created(f"/api/v1/artifacts/{artifact.id}")
    task.result = {"artifact": artifact.id, "sha256": digest, "size": size}
