"""Copying units from a version of one repository into another: the units named (by id, or
by field values such as a package name, a NEVRA or an advisory id), the units they reference,
and, when asked, what the repository type says they need (an RPM's dependencies).

Selecting is index look-ups on the source version (field values through the type's indexed
fields, `content/fields.py`); the copy itself is one new version of the destination, made by
`versions.create_version` like every other, so keys, references and digests hold as always.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from pallet.content.fields import fields_match
from pallet.content.models import Content, ContentReference
from pallet.content.service import iter_fields
from pallet.db.bulk import among, id_batches
from pallet.errors import Invalid
from pallet.plugins import Registry
from pallet.repositories.models import Repository, RepositoryContent as RC
from pallet.repositories.versions import content_ids_query, latest_version, member_at

FOLLOW_ROUNDS = 20


@dataclass
class Selection:
    """What a copy brings: units chosen, units their references brought, units the type's
    dependencies brought, and what could not be found or satisfied."""

    chosen: set[int] = field(default_factory=set)
    referenced: set[int] = field(default_factory=set)
    dependencies: set[int] = field(default_factory=set)
    unresolved: list[str] = field(default_factory=list)

    @property
    def units(self) -> set[int]:
        return self.chosen | self.referenced | self.dependencies

    def summary(self) -> dict[str, Any]:
        return {"chosen": len(self.chosen), "referenced": len(self.referenced),
                "dependencies": len(self.dependencies),
                "unresolved": self.unresolved[:50], "unresolved_count": len(self.unresolved)}


def select_units(session: Session, plugins: Registry, source: Repository, number: int, *,
                 content: Iterable[int] = (), match: Iterable[Mapping[str, Any]] = (),
                 references: bool = True) -> Selection:
    """The units of version `number` of `source` to copy: those of `content` (ids) and
    those each `match` ({type, fields}) finds, then, with `references`, every unit they
    name, and every unit those name, and so on."""
    selection = Selection()
    wanted = set(content)
    present = _present(session, source, number, wanted)
    if wanted - present:
        missing = sorted(wanted - present)
        raise Invalid(f"{len(missing)} unit(s) are not in version {number} of "
                      f"{source.name!r}, e.g. {missing[:5]}", details={"missing": missing[:100]})
    selection.chosen |= present
    allowed = set(plugins.repository_type(source.type).content_types)
    for criterion in match:
        type_, fields = _criterion(criterion, allowed)
        found = _present(session, source, number, _with_fields(session, type_, fields))
        if not found:
            shown = ", ".join(f"{k}={v[:100]}" for k, v in fields.items())
            raise Invalid(f"version {number} of {source.name!r} holds no {type_} with {shown}",
                          details={"match": {"type": type_, "fields": {
                              k: v[:100] for k, v in fields.items()}}})
        selection.chosen |= found
    if references:
        selection.referenced = _follow(session, source, number, selection.chosen)
    return selection


def add_dependencies(session: Session, plugins: Registry, source: Repository, number: int,
                     destination: Repository, selection: Selection, *,
                     references: bool = True) -> None:
    """Add what the repository type says the selected units need (its `dependencies`), and,
    with `references`, the units those name."""
    solve = plugins.repository_type(source.type).dependencies
    if solve is None:
        raise Invalid(f"{source.type} repositories have no dependencies to solve",
                      details={"field": "dependencies"})
    newest = latest_version(session, destination).number
    closure = solve(iter_fields(session, content_ids_query(source, number)),
                    frozenset(selection.units),
                    iter_fields(session, content_ids_query(destination, newest)))
    selection.dependencies = set(closure.add) - selection.units
    selection.unresolved.extend(closure.unresolved)
    if references:
        selection.referenced |= _follow(session, source, number, selection.dependencies)
        selection.referenced -= selection.chosen | selection.dependencies


def _criterion(criterion: Mapping[str, Any], allowed: set[str]) -> tuple[str, dict[str, str]]:
    type_, fields = criterion.get("type"), criterion.get("fields")
    if type_ not in allowed:
        raise Invalid(f"cannot match units of type {type_!r} here; the repository holds "
                      f"{', '.join(sorted(allowed))}", details={"allowed": sorted(allowed)})
    if not isinstance(fields, Mapping) or not fields or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
        raise Invalid("a match names a type and one or more fields with text values, e.g. "
                      '{"type": "rpm.package", "fields": {"name": "bash"}}')
    return type_, dict(fields)


def _with_fields(session: Session, type_: str, fields: Mapping[str, str]) -> set[int]:
    try:
        return set(session.scalars(select(Content.id).where(fields_match(type_, fields))))
    except ValueError as exc:  # a field name that is not an identifier
        raise Invalid(str(exc), details={"fields": sorted(fields)}) from None


def _present(session: Session, repository: Repository, number: int, ids: set[int]) -> set[int]:
    """Those of `ids` that version `number` holds."""
    found: set[int] = set()
    for batch in id_batches(session, sorted(ids)):
        found.update(session.scalars(select(RC.content_id).where(
            RC.repository_id == repository.id, member_at(RC, number),
            among(session, RC.content_id, batch))))
    return found


def _follow(session: Session, repository: Repository, number: int, units: set[int]) -> set[int]:
    """Every unit of the version that `units` name, directly or through others."""
    brought: set[int] = set()
    frontier = set(units)
    for _ in range(FOLLOW_ROUNDS):
        named: set[int] = set()
        for batch in id_batches(session, sorted(frontier)):
            for type_, fields in session.execute(
                    select(ContentReference.type, ContentReference.fields)
                    .where(among(session, ContentReference.content_id, batch))):
                named |= _with_fields(session, type_, fields)
        frontier = _present(session, repository, number, named) - units - brought
        if not frontier:
            break
        brought |= frontier
    return brought
