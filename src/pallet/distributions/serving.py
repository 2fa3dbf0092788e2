"""Noticing, from the writes themselves, that what the content app serves changes.

The content app caches its look-ups (contentapp/lookup.py) and drops them when what is served
changes: at once when the change committed in its own process (`Runtime.serving_epoch`), and
through the one `ServingGeneration` row for the other processes. No service has to say so:
session events on every session of the database (`watch`) look at each write to the tables
the content app reads, and the first one in a transaction that can change an answer grows the
generation, in that transaction; the in-process callback runs once it commits.

The events see ORM flushes (`before_flush`: new, changed and deleted rows) and statements
given to `Session.execute` (`do_orm_execute`: bulk insert, update and delete, ORM or Core).
They do not see statements sent on the connection or to the driver directly: `insert_values`
(COPY, executemany) writes content, links, membership, remote artifact and artifact rows only,
whose inserts change nothing served (tests/test_serving_signal.py pins that list).

What counts, and why the rest does not (a sync writes many rows, and must not drop the caches
at each of its transactions):
- distribution, publication, published_metadata: any insert, update or delete.
- repository_version: insert and delete (a repository's distributions serve its newest;
  membership rows of a version are written before its row, and deleted with it). Not
  version 0, made with its repository before anything can serve it, nor recounts.
- repository: delete (its distributions serve nothing) and a new name or type (generated
  files name the repository). Its other settings, `next_version` among them, serve nothing.
- content_artifact: a path, digest, size or unit changed, or stored bytes unlinked (reclaim
  sets `artifact_id` NULL: a cached answer says "stored"). New links belong to units in no
  version yet, and links gain their bytes without a drop (the content app looks in the store
  before fetching); deleted links belong to units in no version (orphan cleanup).
- remote: delete, and a change of how files are fetched on demand (URL, policy, credentials,
  TLS, proxy, headers, timeouts), not of its sync options.
- Not: content, repository_content, remote_artifact (read afresh for each on-demand fetch,
  `failed_at` is written by the content app itself) and artifact (orphan cleanup deletes
  only artifacts that nothing serves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from sqlalchemy import event, inspect, update
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql.elements import BindParameter, Null

from pallet.content.models import ContentArtifact
from pallet.db import Database
from pallet.distributions.models import Distribution, ServingGeneration
from pallet.publications.models import Publication, PublishedMetadata
from pallet.remotes.models import Remote
from pallet.repositories.models import Repository, RepositoryVersion

# session.info: the transaction (innermost savepoint) whose UPDATE grew the generation.
BUMPED_IN = "serving_bumped_in"


@dataclass(frozen=True)
class Served:
    """Which writes to one table can change what the content app serves."""

    insert: bool = True
    delete: bool = True
    columns: frozenset[str] | None = None  # updates of these (None: of any column)
    nulled: frozenset[str] = frozenset()  # updates setting these to NULL
    # Of new rows flushed, those that count (None: all).
    new_counts: Callable[[object], bool] | None = None


def _all_but(model, *names: str) -> frozenset[str]:
    return frozenset(column.name for column in model.__table__.columns) - set(names)


SERVED: dict[str, Served] = {
    Distribution.__tablename__: Served(),
    Publication.__tablename__: Served(),
    PublishedMetadata.__tablename__: Served(),
    RepositoryVersion.__tablename__: Served(
        columns=frozenset({"repository_id", "number", "created_at"}),
        new_counts=lambda version: version.number != 0),
    Repository.__tablename__: Served(insert=False, columns=frozenset({"name", "type"})),
    ContentArtifact.__tablename__: Served(
        insert=False, delete=False,
        columns=frozenset({"content_id", "relative_path", "sha256", "size"}),
        nulled=frozenset({"artifact_id"})),
    Remote.__tablename__: Served(
        insert=False, columns=_all_but(Remote, "mirror", "options", "created_at",
                                       "updated_at")),
}


def serving_changed(session: Session) -> None:
    """Grow the generation now, in this transaction, unless it grew in it already. Writes
    do this by themselves; call it only to take the generation row's lock early: on
    PostgreSQL it serializes the transactions that change what is served, so checks made
    after it (no two distributions overlap) hold until the commit."""
    if _bumped(session):
        return
    session.connection().execute(
        update(ServingGeneration.__table__).where(ServingGeneration.id == 1)
        .values(generation=ServingGeneration.generation + 1))
    session.info[BUMPED_IN] = session.get_nested_transaction() or session.get_transaction()


def watch(db: Database, committed: Callable[[], None]) -> None:
    """Watch every session of `db`; `committed()` runs after each commit that grew the
    generation (the in-process signal)."""
    for maker in db.sessionmakers():
        event.listen(maker, "before_flush", _before_flush)
        event.listen(maker, "do_orm_execute", _do_orm_execute)
        event.listen(maker, "after_soft_rollback", _after_soft_rollback)
        event.listen(maker, "after_commit", _after_commit(committed))
        event.listen(maker, "after_transaction_end", _after_transaction_end)


def _after_commit(committed: Callable[[], None]) -> Callable[[Session], None]:
    def after_commit(session: Session) -> None:
        # Also called when a savepoint is released: only the outermost commit publishes.
        if (session.get_nested_transaction() is None
                and session.info.pop(BUMPED_IN, None) is not None):
            committed()
    return after_commit


# -- the events -------------------------------------------------------------------------------

def _before_flush(session: Session, _context, _instances) -> None:
    if _bumped(session):
        return
    if (any(_rule(obj, "insert") for obj in session.new)
            or any(_rule(obj, "delete") for obj in session.deleted)
            or any(_updates_served(obj) for obj in session.dirty)):
        serving_changed(session)


def _do_orm_execute(state) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    rule = SERVED.get(getattr(table, "name", None))
    if rule is None or _bumped(state.session):
        return
    if state.is_insert:
        changes = rule.insert
    elif state.is_delete:
        changes = rule.delete
    else:
        changes = _statement_updates_served(rule, state.statement, state.parameters)
    if changes:
        serving_changed(state.session)


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    """A rolled-back savepoint (or transaction) holding the UPDATE took it back."""
    transaction = session.info.get(BUMPED_IN)
    while transaction is not None:
        if transaction is previous:
            session.info.pop(BUMPED_IN, None)
            return
        transaction = transaction.parent


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost: committed (after_commit ran) or not
        session.info.pop(BUMPED_IN, None)


# -- what a write changes ---------------------------------------------------------------------

def _bumped(session: Session) -> bool:
    return session.info.get(BUMPED_IN) is not None


def _rule_of(obj) -> Served | None:
    table = getattr(inspect(obj).mapper.local_table, "name", None)
    return SERVED.get(table)


def _rule(obj, kind: str) -> bool:
    rule = _rule_of(obj)
    if rule is None or not getattr(rule, kind):
        return False
    return kind != "insert" or rule.new_counts is None or rule.new_counts(obj)


def _updates_served(obj) -> bool:
    rule = _rule_of(obj)
    if rule is None:
        return False
    state = inspect(obj)
    for attr in state.mapper.column_attrs:
        history = state.attrs[attr.key].history
        if not history.has_changes():
            continue
        name = attr.columns[0].name
        if rule.columns is None or name in rule.columns:
            return True
        if name in rule.nulled and history.added and history.added[0] is None:
            return True
    return False


def _statement_updates_served(rule: Served, statement, parameters) -> bool:
    assigned = list(_assigned(statement, parameters))
    if not assigned:
        return True  # cannot tell what it sets: assume it matters
    for name, value in assigned:
        if rule.columns is None or name in rule.columns:
            return True
        if name in rule.nulled and value is None:
            return True
    return False


def _assigned(statement, parameters) -> Iterable[tuple[str, object]]:
    """(column name, value) pairs an UPDATE sets; a value that is an expression is given as
    the expression (not None)."""
    values = dict(getattr(statement, "_values", None) or {})
    values.update(dict(getattr(statement, "_ordered_values", None) or ()))
    for key, value in values.items():
        if isinstance(value, Null):
            value = None
        elif isinstance(value, BindParameter):
            value = value.value
        yield getattr(key, "name", key), value
    rows = parameters if isinstance(parameters, list) else [parameters or {}]
    for row in rows:
        yield from row.items()
