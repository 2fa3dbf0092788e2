"""Recording many units and artifacts at once, as sync and import do: set-at-a-time
statements over batches of a few thousand, within the caller's transaction.

Look-ups by sha256, digest or key take a whole batch as one parameter (`= ANY(CAST(%s AS
text[]))` on PostgreSQL, `IN (SELECT value FROM json_each(?))` on SQLite), so the statement is
short and the same every time. Rows go in through `db.bulk.insert_values`.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import any_, bindparam, func, select
from sqlalchemy.types import UserDefinedType
from sqlalchemy.orm import Session

from pallet.artifacts.models import Artifact
from pallet.content.models import Content, ContentArtifact
from pallet.content.references import record_references
from pallet.db.base import utcnow
from pallet.db.bulk import insert_values
from pallet.plugins import Registry

QUERY_CHUNK = 900  # values per IN (...) list: below SQLite's parameter limit
TEXT_BATCH = 10_000  # values per among_text condition
CA = ContentArtifact


@dataclass(frozen=True)
class NewUnit:
    """A unit to record: its type, identity digest, fields, and files (path, sha256, size)."""

    type: str
    digest: str
    data: dict[str, Any]
    files: tuple[tuple[str, str, int | None], ...]


def chunks(values: Iterable) -> Iterator[list]:
    iterator = iter(values)
    while chunk := list(itertools.islice(iterator, QUERY_CHUNK)):
        yield chunk


def text_batches(values: Iterable[str]) -> Iterator[list[str]]:
    """`values` in batches for `among_text` (a whole sync batch is one)."""
    iterator = iter(values)
    while batch := list(itertools.islice(iterator, TEXT_BATCH)):
        yield batch


def among_text(session: Session, column, values: Sequence[str]):
    """SQL condition: the text `column` is one of `values` (one batch of `text_batches`),
    given as one parameter: the statement stays the same whatever the number of values, so
    it is compiled and parsed once.

    On PostgreSQL the parameter is an array literal that the server reads: a constant array
    the executor hashes, whatever the planner believes of the table. (A set-returning
    function in `IN (SELECT …)` was planned as a nested loop over the table whenever its
    statistics were older than a bulk insert, which made one 20,000-unit version take 90 s;
    and psycopg dumps a Python list value by value, where this is one join.)"""
    if _is_postgres(session):
        return column == any_(bindparam(None, _array_literal(values), type_=_TextArrayLiteral()))
    listed = func.json_each(bindparam(None, json.dumps(list(values)))).table_valued("value")
    return column.in_(select(listed.c.value))


class _TextArrayLiteral(UserDefinedType):
    """A bind parameter given as PostgreSQL's text form of `text[]`, cast by the server."""

    cache_ok = True
    render_bind_cast = True

    def get_col_spec(self, **kw) -> str:
        return "TEXT[]"


def _array_literal(values: Sequence[str]) -> str:
    """PostgreSQL's text form of a text array: every element quoted, `\\` and `"` escaped."""
    return "{" + ",".join('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for value in values) + "}"


def find_artifacts(session: Session, shas: Iterable[str]) -> dict[str, tuple[int, int]]:
    """sha256 -> (artifact id, size) for those of `shas` that are recorded."""
    found: dict[str, tuple[int, int]] = {}
    for batch in text_batches(shas):
        found.update((sha, (id_, size)) for sha, id_, size in session.execute(
            select(Artifact.sha256, Artifact.id, Artifact.size)
            .where(among_text(session, Artifact.sha256, batch))))
    return found


def record_artifacts(session: Session, stored: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Rows for verified bytes in the store ({sha256: size}), created where missing;
    returns sha256 -> (artifact id, size) for all of them."""
    artifacts = find_artifacts(session, stored)
    now = utcnow()
    rows = [(sha, stored[sha], now) for sha in sorted(set(stored) - set(artifacts))]
    insert_values(session, Artifact.__table__, ("sha256", "size", "created_at"), rows,
                  skip_existing=True)  # a concurrent sync or import may record the same
    artifacts.update(find_artifacts(session, [row[0] for row in rows]))
    return artifacts


def insert_artifacts(session: Session, stored: dict[str, int]) -> None:
    """Rows for verified bytes in the store ({sha256: size}), where missing, for a caller
    that needs no ids back (an import placing a batch): one statement, where
    `record_artifacts` looks the batch up before and after."""
    now = utcnow()
    insert_values(session, Artifact.__table__, ("sha256", "size", "created_at"),
                  [(sha, size, now) for sha, size in sorted(stored.items())],
                  skip_existing=True)


def find_content(session: Session, digests: Iterable[str]) -> dict[str, int]:
    """identity digest -> content id for those of `digests` that exist."""
    ids: dict[str, int] = {}
    for batch in text_batches(digests):
        ids.update(session.execute(select(Content.digest, Content.id)
                                   .where(among_text(session, Content.digest, batch))).all())
    return ids


def record_units(session: Session, plugins: Registry, units: Iterable[NewUnit],
                 artifacts: dict[str, tuple[int, int]]) -> dict[str, int]:
    """digest -> content id for `units`: the new ones created with their files (linked to
    `artifacts` where the bytes are there, else waiting for them) and their references, and
    stored bytes linked to existing units that lacked them."""
    units = {unit.digest: unit for unit in units}
    ids = find_content(session, units)
    existing = list(ids.values())
    new = [unit for digest, unit in units.items() if digest not in ids]
    if new:
        now = utcnow()
        insert_values(session, Content.__table__, ("type", "digest", "data", "created_at"),
                      [(u.type, u.digest, u.data, now) for u in new], skip_existing=True)
        ids.update(find_content(session, [u.digest for u in new]))
        record_references(session, plugins, ((ids[u.digest], u.type, u.data) for u in new))
    rows = []
    for unit in new:
        for path, sha256, size in unit.files:
            artifact_id, size = artifacts.get(sha256, (None, size))
            rows.append((ids[unit.digest], path, sha256, size, artifact_id))
    insert_values(session, CA.__table__,
                  ("content_id", "relative_path", "sha256", "size", "artifact_id"), rows,
                  skip_existing=True)  # a unit created concurrently has its files already
    link_artifacts(session, existing, artifacts)
    return ids


def link_artifacts(session: Session, content_ids: list[int],
                   artifacts: dict[str, tuple[int, int]]) -> None:
    """Existing units' files whose bytes were missing (on-demand) and are stored now."""
    if not artifacts:  # nothing stored now (an on-demand sync): nothing to look for
        return
    links = []
    for chunk in chunks(content_ids):
        for ca_id, sha256 in session.execute(select(CA.id, CA.sha256).where(
                CA.content_id.in_(chunk), CA.artifact_id.is_(None))):
            if sha256 in artifacts:
                links.append({"ca_id": ca_id, "artifact_id": artifacts[sha256][0]})
    if links:
        table = CA.__table__
        session.execute(table.update().where(table.c.id == bindparam("ca_id"))
                        .values(artifact_id=bindparam("artifact_id")), links)


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
