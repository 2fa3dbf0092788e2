"""References between units: what a type's `references(unit)` names, stored with the unit
when it is recorded (every path that creates content goes through `record_references`).

An exact reference stores the repository key digest of the unit it names, the digest the
named unit's membership rows carry: whether a version holds it is one index look-up.
"""

from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from pallet.content.identity import repository_key_digest
from pallet.content.models import ContentReference
from pallet.db.bulk import insert_values
from pallet.errors import Invalid
from pallet.plugin import Reference
from pallet.plugins import Registry


def references_of(plugins: Registry, type_: str, data: dict[str, Any]) -> list[Reference]:
    """The references of a unit of `type_` with fields `data` (none for most types)."""
    content_type = plugins.content_type(type_)
    if content_type.references is None:
        return []
    return list(content_type.references(content_type.model.model_validate(data)))


def reference_key(plugins: Registry, reference: Reference) -> str | None:
    """The repository key digest an exact reference names (None for a reference by some
    fields). A type naming another by fields that are not its repository key is a plugin's
    mistake, said at once."""
    if not reference.exact:
        return None
    target = plugins.content_type(reference.type)
    fields = target.repository_key_fields
    if set(reference.fields) != set(fields):
        raise Invalid(f"an exact reference to {reference.type} must name its repository key "
                      f"({', '.join(fields)}), not {', '.join(sorted(reference.fields))}")
    return repository_key_digest(reference.type, reference.fields, fields)


def record_references(session: Session, plugins: Registry,
                      units: Iterable[tuple[int, str, dict[str, Any]]]) -> int:
    """Store the references of newly created units ((content id, type, fields)); how many."""
    rows = []
    for content_id, type_, data in units:
        if plugins.content_type(type_).references is None:
            continue
        for reference in references_of(plugins, type_, data):
            rows.append((content_id, reference.type, reference_key(plugins, reference),
                         dict(reference.fields)))
    if rows:
        insert_values(session, ContentReference.__table__,
                      ("content_id", "type", "key", "fields"), rows)
    return len(rows)


def stored_references(session: Session, content_id: int) -> list[dict[str, Any]]:
    """A unit's references as stored: [{type, fields, exact}]."""
    rows = session.execute(select(ContentReference.type, ContentReference.fields,
                                  ContentReference.key)
                           .where(ContentReference.content_id == content_id)
                           .order_by(ContentReference.id))
    return [{"type": type_, "fields": fields, "exact": key is not None}
            for type_, fields, key in rows]
