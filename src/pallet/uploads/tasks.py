"""Tasks of uploads."""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from typing import Iterator

from pallet.artifacts.service import record_artifact
from pallet.content.service import create_content
from pallet.repositories.tasks import make_version
from pallet.runtime import Runtime
from pallet.tasks.registry import task_function
from pallet.uploads.models import Upload
from pallet.uploads.service import check_complete, delete_upload, get_upload, upload_path

log = logging.getLogger(__name__)


@contextmanager
def consuming(runtime: Runtime, task, upload_id: int | None) -> Iterator[None]:
    """Run a task that reads upload `upload_id` (an archive to import or check) and owns it:
    the upload is removed when the task ends, whether it completed, failed or was
    canceled, so no archive is left behind in the uploads directory."""
    try:
        yield
    finally:
        if upload_id is not None:
            try:
                with runtime.db.write() as session:
                    if (upload := session.get(Upload, upload_id)) is not None:
                        delete_upload(session, upload, by_task=task.id)
                upload_path(runtime.settings, upload_id).unlink(missing_ok=True)
            except Exception:  # the task's own outcome matters more than this clean-up
                log.exception("task %s could not remove upload %s", task.id, upload_id)


@task_function("upload.commit")
def commit_upload(runtime: Runtime, task, *, upload_id: int, sha256: str,
                  relative_path: str | None = None, unit_type: str | None = None,
                  repository_id: int | None = None) -> None:
    """Check the upload is whole and has the expected digest; it becomes an artifact, then
    (with `relative_path`) a file unit, or (with `unit_type`) a unit its type reads from the
    file, added (with `repository_id`) as a new version."""
    task.result = _store(runtime, task, upload_id, sha256)
    if relative_path is not None:
        unit_type, fields = "file", {"relative_path": relative_path, "sha256": sha256}
    elif unit_type is not None:
        read = runtime.plugins.content_type(unit_type).from_file
        fields = read(runtime.storage.path(sha256), sha256)
    else:
        return
    # Apart from the artifact's transaction: if the unit or the version is refused, the
    # verified artifact stays (and the upload is gone either way, its bytes moved).
    with runtime.db.write() as session:
        content, _ = create_content(session, runtime.plugins, type=unit_type, fields=fields)
        session.flush()
        task.created(f"/api/v1/content/{content.id}")
        task.result = {**task.result, "content": content.id}
        if repository_id is not None:
            task.result.update(make_version(runtime, task, session, repository_id,
                                            add=[content.id]))


def _store(runtime: Runtime, task, upload_id: int, sha256: str) -> dict:
    """The upload, verified, as an artifact; the upload is gone. The artifact's summary."""
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
    return {"artifact": artifact.id, "sha256": digest, "size": size}
