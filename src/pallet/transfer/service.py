"""Signing keys, exporters, exports, importers and imports: create, find, list, update,
delete. Functions over an explicit session; they flush, never commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pallet.db.named import add_named, get_named, page_named
from pallet.errors import Conflict, Invalid, NotFound
from pallet.paths import allowed_path
from pallet.repositories.models import Repository
from pallet.repositories.service import validate_name
from pallet.settings import Settings
from pallet.transfer import signing
from pallet.transfer.models import Export, Exporter, Import, Importer, SigningKey

MAX_CHUNK = 1 << 40
MIN_CHUNK = 1 << 20


# -- signing keys ---------------------------------------------------------------------------

def create_key(session: Session, *, name: str) -> SigningKey:
    validate_name(name, "signing key")
    private_pem, public_pem = signing.generate()
    key = SigningKey(name=name, private_key=private_pem, public_key=public_pem,
                     key_id=signing.key_id(public_pem))
    add_named(session, key, "signing key")
    return key


def get_key(session: Session, name: str) -> SigningKey:
    return get_named(session, SigningKey, name, "signing key")


def list_keys(session: Session, *, limit: int = 100, offset: int = 0):
    return page_named(session, SigningKey, limit, offset)


def delete_key(session: Session, key: SigningKey) -> None:
    users = list(session.scalars(select(Exporter.name).where(Exporter.signing_key_id == key.id)))
    if users:
        raise Conflict(f"signing key {key.name!r} signs the exports of {', '.join(users)}: "
                       "change those exporters first", details={"exporters": users})
    session.delete(key)
    session.flush()


# -- exporters and exports ------------------------------------------------------------------

def check_export_dir(settings: Settings, path: str) -> Path:
    return allowed_path(path, settings.allowed_export_dirs, setting="allowed_export_dirs")


def _repository_ids(session: Session, names: list[str]) -> list[int]:
    if not names:
        raise Invalid("an exporter needs at least one repository",
                      details={"field": "repositories"})
    if len(set(names)) != len(names):
        raise Invalid("a repository is listed twice", details={"field": "repositories"})
    ids = []
    for name in names:
        ids.append(get_named(session, Repository, name, "repository").id)
    return ids


def _chunk_size(size: int | None) -> int | None:
    if size is not None and not MIN_CHUNK <= size <= MAX_CHUNK:
        raise Invalid(f"chunk_size must be between {MIN_CHUNK} and {MAX_CHUNK} bytes, or null "
                      "for one file", details={"field": "chunk_size"})
    return size


def create_exporter(session: Session, settings: Settings, *, name: str, path: str,
                    repositories: list[str], chunk_size: int | None = None,
                    signing_key: str | None = None) -> Exporter:
    validate_name(name, "exporter")
    exporter = Exporter(name=name, path=str(check_export_dir(settings, path)),
                        repository_ids=_repository_ids(session, repositories),
                        chunk_size=_chunk_size(chunk_size),
                        signing_key_id=get_key(session, signing_key).id if signing_key else None)
    add_named(session, exporter, "exporter")
    return exporter


def get_exporter(session: Session, name: str) -> Exporter:
    return get_named(session, Exporter, name, "exporter")


def list_exporters(session: Session, *, limit: int = 100, offset: int = 0):
    return page_named(session, Exporter, limit, offset)


def update_exporter(session: Session, settings: Settings, exporter: Exporter,
                    changes: dict[str, Any]) -> Exporter:
    """Change the fields in `changes` (a None chunk_size or signing_key clears it)."""
    if "path" in changes:
        exporter.path = str(check_export_dir(settings, changes["path"]))
    if "repositories" in changes:
        exporter.repository_ids = _repository_ids(session, changes["repositories"] or [])
    if "chunk_size" in changes:
        exporter.chunk_size = _chunk_size(changes["chunk_size"])
    if "signing_key" in changes:
        name = changes["signing_key"]
        exporter.signing_key_id = get_key(session, name).id if name else None
    session.flush()
    return exporter


def delete_exporter(session: Session, exporter: Exporter) -> None:
    """Delete an exporter; its exports stay in the history, with their files."""
    session.delete(exporter)
    session.flush()


def repository_names(session: Session, ids: list[int]) -> list[str]:
    """The names of the repositories with these ids, in order; gone ones as '#<id>'."""
    names = dict(session.execute(select(Repository.id, Repository.name)
                                 .where(Repository.id.in_(ids))).all())
    return [names.get(i, f"#{i}") for i in ids]


def last_export(session: Session, exporter: Exporter) -> Export | None:
    return session.scalar(select(Export).where(Export.exporter_id == exporter.id)
                          .order_by(Export.id.desc()).limit(1))


def get_export(session: Session, export_id: int) -> Export:
    export = session.get(Export, export_id)
    if export is None:
        raise NotFound(f"there is no export {export_id}", details={"export": export_id})
    return export


def list_exports(session: Session, *, exporter: Exporter | None = None, limit: int = 100,
                 offset: int = 0) -> tuple[int, list[Export]]:
    query = select(Export)
    if exporter is not None:
        query = query.where(Export.exporter_id == exporter.id)
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    items = session.scalars(query.order_by(Export.id.desc()).limit(limit).offset(offset))
    return count, list(items)


def export_files(export: Export) -> list[Path]:
    """The files an export wrote: its chunks and its table of contents."""
    if export.directory is None:
        return []
    directory = Path(export.directory)
    names = [chunk["name"] for chunk in export.chunks] + [export.toc_file]
    return [directory / name for name in names if name]


def delete_export(session: Session, export: Export) -> list[Path]:
    """Forget an export; returns its files, for the caller to delete after the commit."""
    files = export_files(export)
    session.delete(export)
    session.flush()
    return files


# -- importers and imports ------------------------------------------------------------------

def _mapping(mapping: dict[str, str] | None) -> dict[str, str]:
    mapping = dict(mapping or {})
    for source, destination in mapping.items():
        validate_name(source, "source repository")
        validate_name(destination, "destination repository")
    if len(set(mapping.values())) != len(mapping):
        raise Invalid("two source repositories map onto the same destination",
                      details={"field": "mapping"})
    return mapping


def _trusted(keys: list[str] | None) -> list[str]:
    for pem in keys or []:
        signing.load_public(pem)
    return list(keys or [])


def create_importer(session: Session, *, name: str, mapping: dict[str, str] | None = None,
                    create_repositories: bool = False, distributions: bool = True,
                    trusted_keys: list[str] | None = None,
                    require_signature: bool = False) -> Importer:
    validate_name(name, "importer")
    trusted = _trusted(trusted_keys)
    if require_signature and not trusted:
        raise Invalid("an importer that requires a signature needs trusted keys",
                      details={"field": "trusted_keys"})
    importer = Importer(name=name, mapping=_mapping(mapping),
                        create_repositories=create_repositories, distributions=distributions,
                        trusted_keys=trusted, require_signature=require_signature)
    add_named(session, importer, "importer")
    return importer


def get_importer(session: Session, name: str) -> Importer:
    return get_named(session, Importer, name, "importer")


def list_importers(session: Session, *, limit: int = 100, offset: int = 0):
    return page_named(session, Importer, limit, offset)


def update_importer(session: Session, importer: Importer, changes: dict[str, Any]) -> Importer:
    if "mapping" in changes:
        importer.mapping = _mapping(changes["mapping"])
    if "trusted_keys" in changes:
        importer.trusted_keys = _trusted(changes["trusted_keys"])
    for field in ("create_repositories", "distributions", "require_signature"):
        if changes.get(field) is not None:
            setattr(importer, field, changes[field])
    if importer.require_signature and not importer.trusted_keys:
        raise Invalid("an importer that requires a signature needs trusted keys",
                      details={"field": "trusted_keys"})
    session.flush()
    return importer


def delete_importer(session: Session, importer: Importer) -> None:
    session.delete(importer)
    session.flush()


def list_imports(session: Session, *, importer: Importer | None = None, limit: int = 100,
                 offset: int = 0) -> tuple[int, list[Import]]:
    query = select(Import)
    if importer is not None:
        query = query.where(Import.importer_id == importer.id)
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    items = session.scalars(query.order_by(Import.id.desc()).limit(limit).offset(offset))
    return count, list(items)


def get_import(session: Session, import_id: int) -> Import:
    record = session.get(Import, import_id)
    if record is None:
        raise NotFound(f"there is no import {import_id}", details={"import": import_id})
    return record
