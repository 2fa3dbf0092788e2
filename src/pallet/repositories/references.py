"""References checked when a version is made, in O(the version's changes).

A version breaks a reference when a unit it adds names a unit the version does not hold, or
when it removes the only unit holding a key that a unit it keeps names. Both are found from
the version's own membership rows and the stored references (content/references.py), by
index look-ups: the references of the units added, and the references naming the keys
removed. Only exact references are checked; references by some fields (a group's package
names) are followed by copy, never checked.

What a version broke is recorded on it (`broken_references`: how many, and a few examples),
or, when the caller asks to follow references, the units whose references a removal breaks
leave too, in the same version.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session, aliased

from pallet.content.models import Content, ContentReference
from pallet.db.bulk import among, id_batches
from pallet.repositories.models import Repository, RepositoryContent as RC

CR = ContentReference
EXAMPLES = 10
FOLLOW_ROUNDS = 20  # references are shallow (an advisory names packages); a bound all the same


def _unresolved(repository: Repository):
    """SQL condition: no unit of the newest version holds the reference's key."""
    holder = aliased(RC)
    # `version_removed IS NULL` as written, so the unique index on open keys answers
    return ~exists().where(holder.repository_id == repository.id,
                           holder.repository_key == CR.key, holder.version_removed.is_(None))


def _from_added(repository: Repository, number: int):
    """References of the units version `number` adds that it does not resolve."""
    added = aliased(RC)
    return (select(CR.id, CR.content_id, CR.type, CR.fields)
            .join(added, and_(added.repository_id == repository.id,
                              added.content_id == CR.content_id,
                              added.version_added == number,
                              added.version_removed.is_(None)))
            .where(CR.key.is_not(None), _unresolved(repository)))


def _to_removed(repository: Repository, number: int):
    """References of units version `number` keeps, to keys it removed and does not hold."""
    gone, member = aliased(RC), aliased(RC)
    return (select(CR.id, CR.content_id, CR.type, CR.fields)
            .join(gone, and_(gone.repository_id == repository.id,
                             gone.version_removed == number,
                             gone.repository_key == CR.key))
            .join(member, and_(member.repository_id == repository.id,
                               member.content_id == CR.content_id,
                               (member.version_removed + 0).is_(None)))
            .where(_unresolved(repository)))


def follow_removals(session: Session, repository: Repository, number: int) -> set[int]:
    """Remove, in version `number` (being written), the units whose references its removals
    break, until none is left; the units removed so."""
    followed: set[int] = set()
    for _ in range(FOLLOW_ROUNDS):
        units = set(session.scalars(_to_removed(repository, number)
                                    .with_only_columns(CR.content_id).distinct())) - followed
        if not units:
            break
        for batch in id_batches(session, sorted(units)):
            session.execute(update(RC).where(RC.repository_id == repository.id,
                                             (RC.version_removed + 0).is_(None),
                                             among(session, RC.content_id, batch))
                            .values(version_removed=number)
                            .execution_options(synchronize_session=False))
        followed |= units
    return followed


def broken_by(session: Session, repository: Repository, number: int) -> dict[str, Any] | None:
    """What version `number` (written, newest) broke: {count, examples}, or None."""
    seen: dict[int, tuple[int, str, dict]] = {}
    for query in (_from_added(repository, number), _to_removed(repository, number)):
        for ref_id, unit, type_, fields in session.execute(query):
            seen.setdefault(ref_id, (unit, type_, fields))
    if not seen:
        return None
    examples = [seen[ref_id] for ref_id in sorted(seen)[:EXAMPLES]]
    types = dict(session.execute(select(Content.id, Content.type).where(
        Content.id.in_({unit for unit, _, _ in examples}))).all())
    return {"count": len(seen),
            "examples": [{"unit": unit, "type": types.get(unit), "names": {"type": type_,
                                                                           **fields}}
                         for unit, type_, fields in examples]}
