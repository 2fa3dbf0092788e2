"""Set-at-a-time statements that stay fast on both databases.

SQLite takes ids as `IN (?, ?, …)` in batches below its parameter limit. PostgreSQL takes a
whole batch as one array parameter (`= ANY(%s)`), so a statement compiles once and a batch
can be large. Bulk rows go in through `insert_values`: COPY on PostgreSQL, the driver's own
executemany on SQLite (SQLAlchemy's per-row parameter handling cost more than SQLite took to
store the rows).
"""

from __future__ import annotations

import itertools
from typing import Iterable, Iterator, Sequence

from sqlalchemy import BigInteger, Table, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

SQLITE_BATCH = 900
POSTGRES_BATCH = 50_000


def batch_size(session: Session) -> int:
    return POSTGRES_BATCH if _is_postgres(session) else SQLITE_BATCH


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def id_batches(session: Session, ids: Iterable[int]) -> Iterator[list[int]]:
    return batched(ids, batch_size(session))


def among(session: Session, column, ids: Sequence[int]):
    """SQL condition: `column` is one of `ids` (one batch from `id_batches`)."""
    if _is_postgres(session):
        return column == any_(bindparam(None, list(ids), type_=ARRAY(BigInteger)))
    return column.in_(list(ids))


def insert_rows(session: Session, table: Table, columns: Sequence[str],
                rows: Iterable[tuple], *, skip_existing: bool = False) -> None:
    """Insert many rows of plain values into `table`, within the session's transaction.
    With `skip_existing`, a row that a unique constraint says exists already (perhaps just
    committed by a concurrent transaction) is left out instead of failing the statement.
    On PostgreSQL the rows are driver-ready values (they go through COPY)."""
    connection = session.connection()
    if _is_postgres(session):
        names = ", ".join(columns)
        target = table.name
        with connection.connection.driver_connection.cursor() as cursor:
            if skip_existing:  # COPY cannot skip: stage the rows, then insert what is new
                target = f"pallet_stage_{table.name}"
                cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {target} ON COMMIT DROP AS "
                               f"SELECT {names} FROM {table.name} WITH NO DATA")
                cursor.execute(f"TRUNCATE {target}")
            with cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            if skip_existing:
                cursor.execute(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM "
                               f"{target} ON CONFLICT DO NOTHING")
        return
    statement = table.insert().prefix_with("OR IGNORE") if skip_existing else table.insert()
    for batch in batched(rows, 10_000):
        connection.execute(statement, [dict(zip(columns, row)) for row in batch])


def insert_values(session: Session, table: Table, columns: Sequence[str],
                  rows: Iterable[tuple], *, skip_existing: bool = False) -> None:
    """Insert many rows of values into `table` within the session's transaction, each value
    converted as its column's type does (JSON, timestamps). With `skip_existing`, rows a
    unique constraint says exist (perhaps committed meanwhile by a concurrent sync or
    import) are left out instead of failing the transaction."""
    if _is_postgres(session):
        insert_rows(session, table, columns, _bound(session, table, columns, rows),
                    skip_existing=skip_existing)
        return
    verb = "INSERT OR IGNORE" if skip_existing else "INSERT"
    sql = (f"{verb} INTO {table.name} ({', '.join(columns)}) "
           f"VALUES ({', '.join('?' * len(columns))})")
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        cursor.executemany(sql, _bound(session, table, columns, rows))
    finally:
        cursor.close()


_cursor_numbers = itertools.count()


def driver_rows(session: Session, statement, batch: int = 2_000) -> Iterator[tuple]:
    """The rows of a SELECT as plain tuples from the driver, fetched `batch` at a time: no
    per-row result processing, and a JSON column comes back as its text on both databases
    (the caller decodes a row when it needs it). For long streams, where SQLAlchemy's rows
    cost more than the query. Its parameters go to the driver as they are: plain values
    (ids, numbers, text) only. A batch of 2,000 rpm packages is ~9 MB of text; 10,000 made
    the publish of 50,000 peak at 200 MB on SQLite, 125 MB with 2,000, no slower."""
    session.flush()
    connection = session.connection()
    compiled = statement.compile(dialect=connection.dialect,
                                 compile_kwargs={"render_postcompile": True})
    params = compiled.params
    if compiled.positional:
        params = tuple(params[name] for name in compiled.positiontup)
    driver = connection.connection.driver_connection
    if _is_postgres(session):
        from psycopg.types.string import TextLoader  # 0.1 s to import: not for SQLite

        # A server-side (named) cursor, so the rows stream as SQLite's do instead of arriving
        # all at once; JSON as text, as SQLite gives it. psycopg's own json loader decoded
        # each fetched batch whole: a batch of 10,000 rpm packages held ~450 MB of Python
        # objects at once, and the garbage collector's passes over them made decoding 28x
        # slower than json.loads of the same text a row at a time (5.2 s against 0.19 s for
        # 20,000 packages).
        cursor = driver.cursor(name=f"pallet_rows_{next(_cursor_numbers)}")
        for name in ("json", "jsonb"):
            cursor.adapters.register_loader(name, TextLoader)
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(str(compiled), params)
        while rows := cursor.fetchmany(batch):
            yield from rows
    finally:
        cursor.close()


def _bound(session: Session, table: Table, columns: Sequence[str],
           rows: Iterable[tuple]) -> Iterable[Sequence]:
    dialect = session.get_bind().dialect
    processors = [(i, process) for i, name in enumerate(columns)
                  if (process := table.c[name].type.dialect_impl(dialect)
                      .bind_processor(dialect)) is not None]
    if not processors:
        return rows

    def convert(row: tuple) -> list:
        values = list(row)
        for i, process in processors:
            values[i] = process(values[i])
        return values
    return map(convert, rows)


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
