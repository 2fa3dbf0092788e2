"""Repository versions over membership ranges, each operation in O(changes).

A row of `repository_content` says a unit is present in versions `version_added <= n <
version_removed` (or from `version_added` on while `version_removed` is null). Row version
numbers always name existing versions: deleting a version folds its rows into the next one.
The newest version's content is exactly the rows whose `version_removed` is null.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, Iterator, Literal

from sqlalchemy import and_, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from pallet.content.bulk import among_text, text_batches
from pallet.content.identity import repository_key_digest
from pallet.content.models import Content
from pallet.db.bulk import among, batched, id_batches, insert_values
from pallet.errors import Conflict, Invalid, NotFound
from pallet.plugins import Registry
from pallet.repositories.contentset import (Change, LtHash, carry_counts, key_losers,
                                           plan_change)
from pallet.repositories.models import Repository, RepositoryContent, RepositoryVersion
from pallet.repositories.references import broken_by, follow_removals

# Bulk UPDATE/DELETE here never touch objects loaded in the session.
QUIET = {"synchronize_session": False}

Progress = Callable[[str, int, int | None], None]
References = Literal["report", "follow"]
RC = RepositoryContent


def _no_progress(stage: str, done: int, total: int | None) -> None:
    pass


def present_at(row, number: int):
    """SQL condition: the membership row `row` is present in version `number`."""
    return and_(row.version_added <= number,
                or_(row.version_removed.is_(None), row.version_removed > number))


# Without statistics SQLite may look rows up through an index on a version column (every
# present row) although the query names content ids; writing the version column as an
# expression (`+ 0`) takes that index out of the choice, so it uses (repository_id,
# content_id). At 1M units this is 0.7 s instead of 6.5 s for a 1% version, and 0.1 s instead
# of 20 minutes for a diff. PostgreSQL plans the same either way.

def _open(row):
    """`row` is in the newest version (for queries that also name content ids)."""
    return (row.version_removed + 0).is_(None)


def member_at(row, number: int):
    """present_at for a row looked up by content id: `+ 0` keeps SQLite on the member index."""
    return and_(row.version_added + 0 <= number,
                or_(row.version_removed.is_(None), row.version_removed > number))


# -- reading --------------------------------------------------------------------------------

def latest_version(session: Session, repository: Repository) -> RepositoryVersion:
    return session.scalar(select(RepositoryVersion)
                          .where(RepositoryVersion.repository_id == repository.id)
                          .order_by(RepositoryVersion.number.desc()).limit(1))


def get_version(session: Session, repository: Repository, number: int) -> RepositoryVersion:
    version = session.scalar(select(RepositoryVersion).where(
        RepositoryVersion.repository_id == repository.id, RepositoryVersion.number == number))
    if version is None:
        raise NotFound(f"repository {repository.name!r} has no version {number}",
                       details={"repository": repository.name, "version": number})
    return version


def list_versions(session: Session, repository: Repository, *, limit: int = 100,
                  offset: int = 0) -> tuple[int, list[RepositoryVersion]]:
    where = RepositoryVersion.repository_id == repository.id
    count = session.scalar(select(func.count()).select_from(RepositoryVersion).where(where))
    items = session.scalars(select(RepositoryVersion).where(where)
                            .order_by(RepositoryVersion.number.desc())
                            .limit(limit).offset(offset)).all()
    return count, list(items)


def content_ids_query(repository: Repository, number: int):
    """SELECT of the content ids present in a version."""
    return select(RC.content_id).where(RC.repository_id == repository.id, present_at(RC, number))


def iter_identities(session: Session, repository: Repository, number: int) -> Iterator[str]:
    """Identity digests of a version's content, streamed (bounded memory at any size)."""
    query = (select(Content.digest).join(RC, RC.content_id == Content.id)
             .where(RC.repository_id == repository.id, present_at(RC, number))
             .execution_options(yield_per=10_000))
    yield from session.scalars(query)


def recompute_digest(session: Session, repository: Repository, number: int) -> str:
    """The digest of a version from all its content: the check for the incremental one."""
    return LtHash().add(iter_identities(session, repository, number)).digest


# -- creating -------------------------------------------------------------------------------

def create_version(session: Session, plugins: Registry, repository: Repository, *,
                   add: Iterable[int] = (), remove: Iterable[int] = (),
                   remove_all: bool = False, base_version: int | None = None,
                   references: References = "report",
                   progress: Progress = _no_progress) -> RepositoryVersion | None:
    """Make the next version: `(base - remove) | add`, where base defaults to the newest,
    holding one unit per repository key (an added unit replaces the one whose key it has).

    Every version is made here, so this is where the repository-key rule is kept (and the
    database's unique index on open keys backs it), and where references are checked: those
    the change breaks are recorded on the version (`report`), or, with `follow`, the units
    whose references a removal breaks are removed too (not with `remove_all`, whose caller
    names the whole content). Returns None when the result equals the newest version (no
    version is made then).
    """
    if references not in ("report", "follow"):
        raise Invalid("references must be 'report' or 'follow'",
                      details={"field": "references"})
    if references == "follow" and remove_all:
        raise Invalid("following references applies to additions and removals, not to "
                      "replacing the whole content", details={"field": "references"})
    add, remove = set(add), set(remove)
    latest = latest_version(session, repository)
    _check_content(session, plugins, repository, add)
    _types_by_id(session, remove)  # removing a unit that does not exist is a mistake too
    progress("checking content", len(add), len(add))

    if remove_all:
        return _replace_all(session, plugins, repository, latest, add, progress)
    if base_version is not None and base_version != latest.number:
        base = get_version(session, repository, base_version)
        only_base, only_latest = _diff_ids(session, repository, latest.number, base.number)
        add |= only_base - remove
        remove |= only_latest
    touched = add | remove
    present: set[int] = set()
    for batch in id_batches(session, touched):
        present.update(session.scalars(select(RC.content_id).where(
            RC.repository_id == repository.id, _open(RC),
            among(session, RC.content_id, batch))))
    progress("comparing", len(touched), len(touched))
    change = plan_change(present, add, remove)
    entering, displaced = _settle_keys(session, plugins, repository, change.added,
                                       stays=lambda unit: unit not in change.removed)
    change = Change(added=frozenset(entering), removed=change.removed | displaced)
    if not change:
        return None
    return _write_version(session, repository, latest, change, entering, progress,
                          follow=references == "follow")


def _check_content(session: Session, plugins: Registry, repository: Repository,
                   ids: set[int]) -> None:
    allowed = set(plugins.repository_type(repository.type).content_types)
    found = _types_by_id(session, ids)
    wrong = sorted({t for t in found.values() if t not in allowed})
    if wrong:
        raise Invalid(f"a {repository.type} repository cannot hold content of type "
                      f"{', '.join(wrong)}", details={"allowed": sorted(allowed)})


def _types_by_id(session: Session, ids: set[int]) -> dict[int, str]:
    """{id: type} of the units `ids`, or Invalid naming those that do not exist."""
    found: dict[int, str] = {}
    for batch in id_batches(session, ids):
        found.update(session.execute(select(Content.id, Content.type)
                                     .where(among(session, Content.id, batch))).all())
    missing = sorted(ids - found.keys())
    if missing:
        raise Invalid(f"{len(missing)} content unit(s) do not exist, e.g. {missing[:5]}",
                      details={"missing": missing[:100]})
    return found


# -- one unit per repository key ------------------------------------------------------------

def _settle_keys(session: Session, plugins: Registry, repository: Repository,
                 added: Iterable[int], *, stays: Callable[[int], bool]
                 ) -> tuple[dict[int, str], frozenset[int]]:
    """The repository-key rule applied to a change, in O(changes): of the units that would
    share a key in the new version, an entering unit wins over a present one (the newest
    unit wins: among entering units the highest id, among present ones the latest added).
    Rows left with no key from before keys were enforced are settled here too.

    `stays(unit)` says whether a present unit is in the new version by the change. Returns
    the entering units with their key digests, and the present units that must leave."""
    entering = repository_keys(session, plugins, added)
    candidates = [(key, (1, 0, unit), unit) for unit, key in entering.items()]
    for batch in text_batches(set(entering.values())):
        candidates.extend((key, (0, since, unit), unit) for unit, key, since in session.execute(
            select(RC.content_id, RC.repository_key, RC.version_added).where(
                RC.repository_id == repository.id, RC.version_removed.is_(None),
                among_text(session, RC.repository_key, batch))) if stays(unit))
    candidates.extend((key, (0, since, unit), unit)
                      for unit, since, key in _unkeyed_members(session, plugins, repository)
                      if stays(unit))
    losers = key_losers(candidates)
    return ({unit: key for unit, key in entering.items() if unit not in losers},
            frozenset(losers - entering.keys()))


def repository_keys(session: Session, plugins: Registry, ids: Iterable[int]) -> dict[int, str]:
    """{id: repository key digest} of the units `ids`, as their types define the key.

    Only the key's fields are read out of each unit's JSON (by the database): decoding whole
    units took a quarter of a 50,000-package sync, and on PostgreSQL the fetched rows held
    over a gigabyte."""
    keys: dict[int, str] = {}
    for batch in id_batches(session, sorted(ids)):
        by_type: dict[str, list[int]] = {}
        for unit, type_, digest in session.execute(
                select(Content.id, Content.type, Content.digest)
                .where(among(session, Content.id, batch))):
            if plugins.content_type(type_).repository_key:
                by_type.setdefault(type_, []).append(unit)
            else:  # keyed by its natural key: its identity is its key digest
                keys[unit] = digest
        for type_, units in by_type.items():
            fields = plugins.content_type(type_).repository_key_fields
            for unit, *values in session.execute(
                    select(Content.id, *(Content.data[name] for name in fields))
                    .where(among(session, Content.id, units))):
                keys[unit] = repository_key_digest(type_, dict(zip(fields, values)), fields)
    return keys


def _key_of(plugins: Registry, type_: str, digest: str, data: dict) -> str:
    """A unit's repository key digest; a type keyed by its natural key has its identity."""
    content_type = plugins.content_type(type_)
    if not content_type.repository_key:
        return digest
    return repository_key_digest(type_, data, content_type.repository_key_fields)


def _unkeyed_members(session: Session, plugins: Registry, repository: Repository
                     ) -> Iterator[tuple[int, int, str]]:
    """(unit, version added, key) of the newest version's rows that have no key: those that
    shared a key before keys were enforced. An index look-up; usually none."""
    rows = session.execute(
        select(RC.content_id, RC.version_added, Content.type, Content.digest, Content.data)
        .join(Content, Content.id == RC.content_id)
        .where(RC.repository_id == repository.id, RC.version_removed.is_(None),
               RC.repository_key.is_(None)))
    for unit, since, type_, digest, data in rows:
        yield unit, since, _key_of(plugins, type_, digest, data)


def duplicate_keys(session: Session, plugins: Registry, repository: Repository,
                   number: int) -> list[dict]:
    """The repository keys that version `number` holds more than once (only versions made
    before keys were enforced can), each with its units, newest last: the next version
    keeps that one."""
    unkeyed = session.execute(
        select(RC.content_id, RC.version_added, Content.type, Content.digest, Content.data)
        .join(Content, Content.id == RC.content_id)
        .where(RC.repository_id == repository.id, present_at(RC, number),
               RC.repository_key.is_(None))).all()
    groups: dict[str, list[tuple[int, int]]] = {}
    fields: dict[str, dict] = {}
    for unit, since, type_, digest, data in unkeyed:
        key = _key_of(plugins, type_, digest, data)
        groups.setdefault(key, []).append((since, unit))
        fields[key] = {name: data[name]
                       for name in plugins.content_type(type_).repository_key_fields}
    for batch in text_batches(list(groups)):
        for unit, key, since in session.execute(
                select(RC.content_id, RC.repository_key, RC.version_added).where(
                    RC.repository_id == repository.id, present_at(RC, number),
                    among_text(session, RC.repository_key, batch))):
            groups[key].append((since, unit))
    return [{"key": fields[key], "units": [unit for _, unit in sorted(members)]}
            for key, members in sorted(groups.items(), key=lambda kv: min(kv[1]))
            if len(members) > 1]


def _write_version(session: Session, repository: Repository, latest: RepositoryVersion,
                   change: Change, keys: dict[int, str], progress: Progress, *,
                   follow: bool) -> RepositoryVersion:
    number = repository.next_version
    total, done = len(change.added) + len(change.removed), 0
    # Rows leave before rows enter: the unique index on open keys sees no moment of two.
    for batch in id_batches(session, sorted(change.removed)):
        session.execute(update(RC).where(RC.repository_id == repository.id,
                                         _open(RC),
                                         among(session, RC.content_id, batch))
                        .values(version_removed=number).execution_options(**QUIET))
        done += len(batch)
        progress("writing version", done, total)
    for batch in batched(sorted(change.added), 20_000):
        _add_members(session, repository, number, batch, keys)
        done += len(batch)
        progress("writing version", done, total)
    if follow:
        change = Change(added=change.added, removed=change.removed
                        | follow_removals(session, repository, number))
    lthash = LtHash(latest.lthash)
    added_types, removed_types = Counter(), Counter()
    for ids, types, apply in ((change.added, added_types, lthash.add),
                              (change.removed, removed_types, lthash.remove)):
        for batch in id_batches(session, sorted(ids)):
            rows = session.execute(select(Content.type, Content.digest)
                                   .where(among(session, Content.id, batch))).all()
            types.update(type_ for type_, _ in rows)
            apply(digest for _, digest in rows)
    return _record_version(session, repository, number, lthash,
                           carry_counts(latest.counts, added_types, removed_types))


def _replace_all(session: Session, plugins: Registry, repository: Repository,
                 latest: RepositoryVersion, add: set[int], progress: Progress
                 ) -> RepositoryVersion | None:
    """remove_all: the new version holds exactly `add` (one unit per key). Runs in SQL,
    never loading the old set."""
    number = repository.next_version
    keep = select(RC.content_id).where(RC.repository_id == repository.id, _open(RC))
    leaving = (select(Content.type, func.count()).join(RC, RC.content_id == Content.id)
               .where(RC.repository_id == repository.id, RC.version_removed.is_(None)))
    present: set[int] = set()
    for batch in id_batches(session, add):
        present.update(session.scalars(keep.where(among(session, RC.content_id, batch))))
    entering, displaced = _settle_keys(session, plugins, repository, add - present,
                                       stays=present.__contains__)
    # Units in `add` that are present already stay (unless an entering one takes their
    # key); everything else present leaves.
    stay = sorted(present - displaced)
    present_types = Counter(dict(session.execute(leaving.group_by(Content.type)).all()))
    removed_types = present_types - _types_of(session, stay)
    if not entering and not removed_types:
        return None
    mark = update(RC).where(RC.repository_id == repository.id, RC.version_removed.is_(None))
    # Mark everything present as leaving, then bring back the ones that stay.
    session.execute(mark.values(version_removed=number)
                    .execution_options(**QUIET))
    for batch in id_batches(session, stay):
        session.execute(update(RC).where(RC.repository_id == repository.id,
                                         RC.version_removed == number,
                                         among(session, RC.content_id, batch))
                        .values(version_removed=None)
                        .execution_options(**QUIET))
    _add_members(session, repository, number, sorted(entering), entering)
    progress("writing version", 1, 1)
    lthash = LtHash()
    for batch in id_batches(session, sorted(set(stay) | entering.keys())):
        lthash.add(session.scalars(select(Content.digest)
                                   .where(among(session, Content.id, batch))))
    return _record_version(session, repository, number, lthash,
                           carry_counts(latest.counts, _types_of(session, entering),
                                        removed_types))


def _add_members(session: Session, repository: Repository, number: int,
                 content_ids: Iterable[int], keys: dict[int, str]) -> None:
    insert_values(session, RC.__table__,
                  ("repository_id", "content_id", "version_added", "repository_key"),
                  ((repository.id, content_id, number, keys[content_id])
                   for content_id in content_ids))


def _types_of(session: Session, ids: Iterable[int]) -> Counter:
    types: Counter = Counter()
    for batch in id_batches(session, ids):
        types.update(session.scalars(select(Content.type)
                                     .where(among(session, Content.id, batch))))
    return types


def _record_version(session: Session, repository: Repository, number: int, lthash: LtHash,
                    counts: dict) -> RepositoryVersion:
    version = RepositoryVersion(repository_id=repository.id, number=number, counts=counts,
                                lthash=lthash.state, digest=lthash.digest,
                                broken_references=broken_by(session, repository, number))
    session.add(version)
    repository.next_version = number + 1
    session.flush()
    apply_retention(session, repository)
    return version


# -- comparing ------------------------------------------------------------------------------

def _changed_queries(repository: Repository, old: int, new: int):
    """SELECTs of membership rows added and removed between versions old < new."""
    other = aliased(RC)
    added = select(RC).where(
        RC.repository_id == repository.id, RC.version_added > old, RC.version_added <= new,
        or_(RC.version_removed.is_(None), RC.version_removed > new),
        ~exists().where(other.repository_id == repository.id,
                        other.content_id == RC.content_id, member_at(other, old)))
    removed = select(RC).where(
        RC.repository_id == repository.id, RC.version_added <= old,
        RC.version_removed > old, RC.version_removed <= new,
        ~exists().where(other.repository_id == repository.id,
                        other.content_id == RC.content_id, member_at(other, new)))
    return added, removed


def diff_queries(repository: Repository, old: int, new: int):
    """(added, removed) SELECTs of content ids going from version `old` to version `new`."""
    if old == new:
        nothing = select(RC.content_id).where(False)
        return nothing, nothing
    low, high = sorted((old, new))
    added, removed = _changed_queries(repository, low, high)
    added = added.with_only_columns(RC.content_id)
    removed = removed.with_only_columns(RC.content_id)
    return (added, removed) if old < new else (removed, added)


def diff_content_query(repository: Repository, old: int, new: int, change: str):
    """SELECT of the content units that going from `old` to `new` adds or removes."""
    added, removed = diff_queries(repository, old, new)
    ids = (added if change == "added" else removed).subquery()
    return select(Content).join(ids, ids.c.content_id == Content.id)


def _diff_ids(session: Session, repository: Repository, old: int, new: int
              ) -> tuple[set[int], set[int]]:
    added, removed = diff_queries(repository, old, new)
    return set(session.scalars(added)), set(session.scalars(removed))


def diff_counts(session: Session, repository: Repository, old: int, new: int
                ) -> dict[str, dict[str, int]]:
    """Per type, how many units going from `old` to `new` adds and removes."""
    counts: dict[str, dict[str, int]] = {}
    for label, query in zip(("added", "removed"), diff_queries(repository, old, new)):
        ids = query.subquery()
        rows = session.execute(select(Content.type, func.count())
                               .join(ids, ids.c.content_id == Content.id)
                               .group_by(Content.type)).all()
        for type_, count in rows:
            counts.setdefault(type_, {"added": 0, "removed": 0})[label] = count
    return counts


# -- deleting -------------------------------------------------------------------------------

def delete_version(session: Session, repository: Repository, number: int) -> None:
    """Delete a version, folding its changes into the next one (whose content is unchanged)."""
    version = get_version(session, repository, number)
    following = session.scalar(select(func.min(RepositoryVersion.number)).where(
        RepositoryVersion.repository_id == repository.id, RepositoryVersion.number > number))
    preceding = session.scalar(select(func.max(RepositoryVersion.number)).where(
        RepositoryVersion.repository_id == repository.id, RepositoryVersion.number < number))
    if following is None and preceding is None:
        raise Conflict(f"version {number} is the only version of {repository.name!r}; delete "
                       "the repository instead", details={"version": number})
    mine = RC.repository_id == repository.id
    if following is None:
        # The newest goes: what it added disappears, what it removed comes back.
        session.execute(delete(RC).where(mine, RC.version_added == number)
                        .execution_options(**QUIET))
        session.execute(update(RC).where(mine, RC.version_removed == number)
                        .values(version_removed=None).execution_options(**QUIET))
    else:
        _fold_into(session, repository, number, following)
    session.delete(version)
    session.flush()
    if following is not None:
        _recount(session, repository, following)


def _fold_into(session: Session, repository: Repository, number: int, following: int) -> None:
    mine = RC.repository_id == repository.id
    # Present only in the deleted version: gone entirely.
    session.execute(delete(RC).where(mine, RC.version_added == number,
                                     RC.version_removed == following).execution_options(**QUIET))
    session.execute(update(RC).where(mine, RC.version_added == number)
                    .values(version_added=following).execution_options(**QUIET))
    # Removed in the deleted version and added back in the next: one unbroken range.
    readded = aliased(RC)
    pairs = session.execute(
        select(RC.id, readded.id, readded.version_removed)
        .join(readded, and_(readded.repository_id == RC.repository_id,
                            readded.content_id == RC.content_id,
                            readded.version_added + 0 == following))
        .where(mine, RC.version_removed == number)).all()
    table = RC.__table__
    extend = (update(table).where(table.c.id == bindparam("old_id"))
              .values(version_removed=bindparam("until")))
    for batch in id_batches(session, pairs):
        # The later row goes first: both are one unit's, so while both were open they
        # would hold one repository key twice.
        session.execute(delete(RC).where(among(session, RC.id, [new for _, new, _ in batch]))
                        .execution_options(**QUIET))
        session.connection().execute(extend, [{"old_id": old_id, "until": until}
                                              for old_id, _, until in batch])
    session.execute(update(RC).where(mine, RC.version_removed == number)
                    .values(version_removed=following).execution_options(**QUIET))


def _recount(session: Session, repository: Repository, number: int) -> None:
    """Re-derive a version's added/removed counts from its own rows (O(its changes))."""
    version = get_version(session, repository, number)
    counts = {t: {"added": 0, "removed": 0, "present": c["present"]}
              for t, c in (version.counts or {}).items()}
    for label, column in (("added", RC.version_added), ("removed", RC.version_removed)):
        rows = session.execute(select(Content.type, func.count())
                               .join(RC, RC.content_id == Content.id)
                               .where(RC.repository_id == repository.id, column == number)
                               .group_by(Content.type)).all()
        for type_, count in rows:
            counts.setdefault(type_, {"added": 0, "removed": 0, "present": 0})[label] = count
    version.counts = {t: c for t, c in counts.items() if any(c.values())}
    session.flush()


def apply_retention(session: Session, repository: Repository) -> list[int]:
    """Delete the oldest versions beyond `retain_versions`; return their numbers."""
    if not repository.retain_versions:
        return []
    numbers = list(session.scalars(select(RepositoryVersion.number)
                                   .where(RepositoryVersion.repository_id == repository.id)
                                   .order_by(RepositoryVersion.number.desc())))
    doomed = sorted(numbers[repository.retain_versions:])
    for number in doomed:
        delete_version(session, repository, number)
    return doomed
