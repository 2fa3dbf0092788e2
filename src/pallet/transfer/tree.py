"""A publication written as a plain directory tree: its content at its relative paths and its
metadata files beside them, so any client (or a Pallet with a `file://` remote) can read it.

Files are copied, hard-linked or symlinked from the artifact store. Each file is placed under
a temporary name and renamed, so a reader never sees half a file. An incremental tree, from a
start version, places only the files added since that version and deletes those removed;
the metadata files are always rewritten, last, so a client reading the tree's index meanwhile
still finds every file it lists. No file is written outside the target directory: every
parent directory is checked after its links are resolved.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from pallet.artifacts.models import Artifact
from pallet.artifacts.storage import LocalStorage
from pallet.content.service import stream_units
from pallet.errors import Invalid
from pallet.publications.models import Publication, PublishedMetadata
from pallet.repositories.models import Repository, RepositoryVersion
from pallet.repositories.versions import content_ids_query, diff_queries, get_version

METHODS = ("copy", "hardlink", "symlink")
Progress = Callable[[str, int, int | None], None]


def write_tree(session: Session, storage: LocalStorage, publication: Publication, target: Path,
               *, method: str = "copy", start_version: int | None = None,
               progress: Progress = lambda stage, done, total: None) -> dict:
    """Write the publication's tree into `target` (an allowed, resolved directory)."""
    if method not in METHODS:
        raise Invalid(f"method must be one of {', '.join(METHODS)}", details={"field": "method"})
    if not publication.pass_through:
        raise Invalid("only publications that serve content at its own paths can be written "
                      "as a plain tree", details={"publication": publication.id})
    repository = session.get(Repository, publication.repository_id)
    version = session.get(RepositoryVersion, publication.version_id)
    target.mkdir(parents=True, exist_ok=True)
    place = _Placer(storage, target.resolve(), method)
    if start_version is None:
        added, removed = content_ids_query(repository, version.number), None
    else:
        start = get_version(session, repository, start_version)
        added, removed = diff_queries(repository, start.number, version.number)
    if removed is not None:
        for unit in stream_units(session, removed):
            for file in unit.files:
                place.remove(file.relative_path)
    done = 0
    for unit in stream_units(session, added):
        for file in unit.files:
            if file.sha256 is None or not storage.exists(file.sha256):
                raise Invalid(f"{file.relative_path} was never downloaded (on-demand content): "
                              "sync it with the immediate policy first",
                              code="not_downloaded", details={"relative_path": file.relative_path})
            place.file(file.sha256, file.relative_path)
            done += 1
            progress("writing files", done, None)
    metadata = session.execute(
        select(PublishedMetadata.relative_path, Artifact.sha256)
        .join(Artifact, Artifact.id == PublishedMetadata.artifact_id)
        .where(PublishedMetadata.publication_id == publication.id)).all()
    for relative_path, sha256 in metadata:
        place.file(sha256, relative_path, method="copy")  # the index must not change later
    return {"files": done, "removed": place.removed, "metadata": len(metadata),
            "path": str(target), "method": method, "repository": repository.name,
            "version": version.number, "start_version": start_version}


class _Placer:
    def __init__(self, storage: LocalStorage, root: Path, method: str) -> None:
        self.storage, self.root, self.method = storage, root, method
        self.removed = 0

    def _inside(self, relative_path: str) -> Path:
        """The path of `relative_path` in the tree, its folders made one at a time, each
        checked first: a link in the tree never leads a write (or a folder) elsewhere."""
        folder = self.root
        for part in relative_path.split("/")[:-1]:
            folder = folder / part
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                raise Invalid(f"{relative_path} would be written outside {self.root} ("
                              f"{folder} is a link or a file)",
                              details={"relative_path": relative_path})
            if not folder.exists():
                folder.mkdir()
        return folder / relative_path.rsplit("/", 1)[-1]

    def file(self, sha256: str, relative_path: str, method: str | None = None) -> None:
        path = self._inside(relative_path)
        source = self.storage.path(sha256)
        temporary = path.with_name(f".{path.name}.pallet-tmp")
        temporary.unlink(missing_ok=True)
        method = method or self.method
        try:
            if method == "hardlink":
                os.link(source, temporary)
            elif method == "symlink":
                os.symlink(source, temporary)
            else:
                shutil.copyfile(source, temporary)
        except OSError as exc:
            hint = " (hard links need the tree on the artifact store's file system)" \
                if method == "hardlink" else ""
            raise Invalid(f"cannot write {relative_path}: {exc.strerror}{hint}",
                          details={"relative_path": relative_path}) from None
        os.replace(temporary, path)

    def remove(self, relative_path: str) -> None:
        path = self._inside(relative_path)
        if path.is_file() or path.is_symlink():
            path.unlink()
            self.removed += 1

