"""An advisory (erratum) as a content unit: one `<update>` of a yum repository's updateinfo,
with its references and package lists (and their module context), kept as upstream wrote it.

Its natural key is every field, so an advisory updated upstream under the same id is another
unit; its repository key is the id, so the updated one replaces the old one in the next
version. It has no files: dnf reads advisories from the publication's updateinfo. It names
each package of its collections by NEVRA (exact references).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Iterator

import createrepo_c as cr

from pallet.plugin import Invalid, Reference, UnitModel
from pallet.plugins.rpm.package import NEVRA, TYPE as PACKAGE, validated

TYPE = "rpm.advisory"
MAX_PACKAGES = 20_000
DATE = "%Y-%m-%d %H:%M:%S"
_TEXTS = ("type", "severity", "title", "summary", "description", "solution", "rights",
          "release", "version", "status", "pushcount")
_PACKAGE_FIELDS = ("name", "epoch", "version", "release", "arch", "src", "filename", "sum",
                   "sum_type", "reboot_suggested", "restart_suggested", "relogin_suggested")
_MODULE_FIELDS = ("name", "stream", "version", "context", "arch")


class Advisory(UnitModel):
    id: str
    issuer: str | None = None  # the update's `from` attribute
    type: str | None = None
    severity: str | None = None
    title: str | None = None
    summary: str | None = None
    description: str | None = None
    solution: str | None = None
    rights: str | None = None
    release: str | None = None
    version: str | None = None
    status: str | None = None
    pushcount: str | None = None
    issued: str | None = None  # "YYYY-MM-DD HH:MM:SS"
    updated: str | None = None
    reboot_suggested: bool = False
    references: list[dict[str, str | None]] = []  # href, id, title, type
    collections: list[dict[str, Any]] = []  # name, shortname, module, packages


FIELDS = tuple(Advisory.model_fields)


def no_files(unit: Advisory) -> dict[str, str]:
    return {}  # dnf reads advisories from the publication's updateinfo


def references(unit: Advisory) -> Iterator[Reference]:
    """The packages the advisory's collections name, by NEVRA, epoch "0" when absent (an
    advisory often names builds for other architectures than a repository holds: those are
    reported, not refused)."""
    seen = set()
    for collection in unit.collections:
        for package in collection.get("packages", ()):
            nevra = {name: package.get(name) or "" for name in NEVRA}
            nevra["epoch"] = nevra["epoch"] or "0"
            if tuple(nevra.values()) not in seen:
                seen.add(tuple(nevra.values()))
                yield Reference(PACKAGE, nevra)


def fields_of(record: cr.UpdateRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {name: getattr(record, name) for name in _TEXTS}
    fields.update(id=record.id, issuer=record.fromstr, issued=_date(record.issued_date),
                  updated=_date(record.updated_date),
                  reboot_suggested=bool(record.reboot_suggested))
    fields["references"] = [{"href": r.href, "id": r.id, "title": r.title, "type": r.type}
                            for r in record.references]
    fields["collections"] = [_collection(c) for c in record.collections]
    return fields


def _collection(collection: cr.UpdateCollection) -> dict[str, Any]:
    module = collection.module
    return {"name": collection.name, "shortname": collection.shortname,
            "module": ({name: getattr(module, name) for name in _MODULE_FIELDS}
                       if module is not None else None),
            "packages": [{name: getattr(p, name) for name in _PACKAGE_FIELDS}
                         for p in collection.packages]}


def _date(value: dt.datetime | None) -> str | None:
    return value.strftime(DATE) if value is not None else None


def checked(fields: dict[str, Any], where: str) -> Advisory:
    """The advisory of `fields`, or Invalid saying which advisory in `where` is wrong (one
    naming more than MAX_PACKAGES packages is: the largest real ones name a few thousand,
    and each name is a stored reference)."""
    named = sum(len(c.get("packages") or ()) for c in fields.get("collections") or ())
    if named > MAX_PACKAGES:
        raise Invalid(f"advisory {str(fields.get('id'))[:100]!r} in {where} names {named} "
                      f"packages; at most {MAX_PACKAGES} are taken")
    return validated(Advisory, fields, f"advisory {str(fields.get('id'))[:100]!r} in {where}")


def updateinfo(advisories: Iterable[dict[str, Any]]) -> str:
    """updateinfo.xml of the advisories' fields, as createrepo_c writes it."""
    info = cr.UpdateInfo()
    for fields in advisories:
        info.append(_record(fields))
    return info.xml_dump()


def _record(fields: dict[str, Any]) -> cr.UpdateRecord:
    record = cr.UpdateRecord()
    record.id, record.fromstr = fields["id"], fields.get("issuer")
    for name in _TEXTS:
        if fields.get(name) is not None:
            setattr(record, name, fields[name])
    for name, attribute in (("issued", "issued_date"), ("updated", "updated_date")):
        if fields.get(name):
            setattr(record, attribute, dt.datetime.strptime(fields[name], DATE))
    record.reboot_suggested = fields.get("reboot_suggested", False)
    for ref in fields.get("references", ()):
        reference = cr.UpdateReference()
        for name in ("href", "id", "title", "type"):
            if ref.get(name) is not None:
                setattr(reference, name, ref[name])
        record.append_reference(reference)
    for coll in fields.get("collections", ()):
        record.append_collection(_update_collection(coll))
    return record


def _update_collection(fields: dict[str, Any]) -> cr.UpdateCollection:
    collection = cr.UpdateCollection()
    for name in ("name", "shortname"):
        if fields.get(name) is not None:
            setattr(collection, name, fields[name])
    if fields.get("module"):
        module = cr.UpdateCollectionModule()
        for name in _MODULE_FIELDS:
            if fields["module"].get(name) is not None:
                setattr(module, name, fields["module"][name])
        collection.module = module
    for pkg in fields.get("packages", ()):
        package = cr.UpdateCollectionPackage()
        for name in _PACKAGE_FIELDS:
            if pkg.get(name) is not None:
                setattr(package, name, pkg[name])
        collection.append(package)
    return collection
