"""Uploads: a file of known size, received in chunks in any order, in parallel, resumable.

Chunks are written in place into one file per upload (`uploads_dir/<id>`), each at its own
offset, and recorded. The upload is finished by a commit task that checks every byte arrived,
hashes the file against the sha256 the client expects, and moves it into the artifact store.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pallet.auth.permissions import WRITE
from pallet.auth.service import Principal
from pallet.errors import Conflict, Forbidden, Invalid, NotFound, TooLarge
from pallet.settings import Settings
from pallet.tasks.models import UNFINISHED, Task, TaskLock
from pallet.uploads.models import Upload, UploadChunk

CONTENT_RANGE = re.compile(r"^bytes (\d{1,19})-(\d{1,19})/(\d{1,19})$")


def upload_path(settings: Settings, upload_id: int) -> Path:
    return settings.uploads_dir / str(upload_id)


def create_upload(session: Session, settings: Settings, *, size: int,
                  created_by: str | None) -> Upload:
    if size < 0:
        raise Invalid("size must not be negative", details={"field": "size"})
    if size > settings.max_upload_size:
        raise TooLarge(f"an upload of {size} bytes is larger than the limit of "
                       f"{settings.max_upload_size}", details={"limit": settings.max_upload_size})
    upload = Upload(size=size, created_by=created_by)
    session.add(upload)
    session.flush()
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    with open(upload_path(settings, upload.id), "wb") as file:
        file.truncate(size)  # sparse: chunks fill it in any order
    return upload


def get_upload(session: Session, upload_id: int) -> Upload:
    upload = session.get(Upload, upload_id)
    if upload is None:
        raise NotFound(f"there is no upload {upload_id}", details={"upload": upload_id})
    return upload


def own_upload(session: Session, upload_id: int, principal: Principal) -> Upload:
    """The upload, if `principal` may change or consume it: a writer any upload, anyone
    else (an importer sending an archive) only their own."""
    upload = get_upload(session, upload_id)
    if WRITE not in principal.permissions and upload.created_by != principal.username:
        raise Forbidden(f"upload {upload_id} belongs to {upload.created_by or 'no user'!r}, "
                        f"not to {principal.username!r}", details={"upload": upload_id})
    return upload


def list_uploads(session: Session, *, limit: int = 100, offset: int = 0
                 ) -> tuple[int, list[Upload]]:
    count = session.scalar(select(func.count()).select_from(Upload))
    return count, list(session.scalars(select(Upload).order_by(Upload.id)
                                       .limit(limit).offset(offset)))


def parse_content_range(header: str | None, upload: Upload, settings: Settings
                        ) -> tuple[int, int]:
    """(offset, length) of a chunk from its `Content-Range: bytes start-end/total` header."""
    match = CONTENT_RANGE.match(header or "")
    if not match:
        raise Invalid("a chunk needs a header 'Content-Range: bytes START-END/TOTAL'",
                      details={"header": "Content-Range"})
    start, end, total = (int(g) for g in match.groups())
    if total != upload.size:
        raise Invalid(f"the range's total {total} is not the upload's size {upload.size}")
    if start > end or end >= upload.size:
        raise Invalid(f"range {start}-{end} does not lie within 0-{upload.size - 1}")
    length = end - start + 1
    if length > settings.max_upload_chunk_size:
        raise TooLarge(f"a chunk of {length} bytes is larger than the limit of "
                       f"{settings.max_upload_chunk_size}")
    return start, length


def write_chunk(settings: Settings, upload: Upload, offset: int, length: int,
                blocks) -> None:
    """Write a chunk's bytes at its offset; the body must be exactly `length` bytes."""
    written = 0
    path = upload_path(settings, upload.id)
    gone = NotFound(f"there is no upload {upload.id} (committed or deleted)",
                    details={"upload": upload.id})
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        raise gone from None
    try:
        # Shared lock: a commit takes it exclusively once it has moved the file away, so a
        # chunk is either written before the commit hashes, or refused.
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            if not os.path.samestat(os.fstat(fd), os.stat(path)):
                raise gone
        except FileNotFoundError:
            raise gone from None
        for block in blocks:
            if written + len(block) > length:
                raise Invalid(f"the chunk body is longer than its range ({length} bytes)")
            os.pwrite(fd, block, offset + written)
            written += len(block)
        if written != length:
            raise Invalid(f"the chunk body has {written} bytes, its range says {length}")
        os.fsync(fd)
    finally:
        os.close(fd)


def record_chunk(session: Session, upload: Upload, offset: int, length: int) -> None:
    session.add(UploadChunk(upload_id=upload.id, offset=offset, size=length))
    session.flush()


def received_ranges(session: Session, upload: Upload) -> list[tuple[int, int]]:
    """The byte ranges received so far, merged, as inclusive (start, end) pairs."""
    chunks = session.execute(select(UploadChunk.offset, UploadChunk.size)
                             .where(UploadChunk.upload_id == upload.id)
                             .order_by(UploadChunk.offset)).all()
    merged: list[list[int]] = []
    for offset, size in chunks:
        end = offset + size - 1
        if merged and offset <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([offset, end])
    return [(start, end) for start, end in merged]


def received_bytes(ranges: list[tuple[int, int]]) -> int:
    return sum(end - start + 1 for start, end in ranges)


def delete_upload(session: Session, upload: Upload, *, by_task: int | None = None) -> None:
    """Forget an upload (the caller removes its file once this is committed), unless a
    task other than `by_task` holds it."""
    holders = (select(Task.id).join(TaskLock, TaskLock.task_id == Task.id)
               .where(TaskLock.resource == lock_name(upload.id), Task.state.in_(UNFINISHED)))
    if by_task is not None:
        holders = holders.where(Task.id != by_task)
    committing = session.scalar(holders.limit(1))
    if committing is not None:
        raise Conflict(f"upload {upload.id} is being committed by task {committing}",
                       details={"task": committing})
    session.delete(upload)
    session.flush()


def lock_name(upload_id: int) -> str:
    return f"upload:{upload_id}"


def check_complete(session: Session, upload: Upload) -> None:
    missing = upload.size - received_bytes(received_ranges(session, upload))
    if missing:
        raise Conflict(f"upload {upload.id} still misses {missing} of its {upload.size} bytes",
                       details={"upload": upload.id, "missing_bytes": missing})
