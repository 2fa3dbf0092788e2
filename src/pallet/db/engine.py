"""The engine and its two kinds of session.

SQLite is first class: WAL so readers never wait for the writer, a busy timeout, and one
writer path — write sessions open with `BEGIN IMMEDIATE`, so two writers queue for the lock
instead of failing half-way when a read transaction tries to become a write one.
PostgreSQL needs none of this; both session kinds behave alike there.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            # As many connections as the API's request threads, so none waits for the pool.
            self.engine = create_engine(url, pool_size=40, max_overflow=10,
                                        connect_args={"check_same_thread": False,
                                                      "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=20,
                                        pool_pre_ping=True)
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(self.engine.execution_options(pallet_write=True),
                                    expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading. Closing it ends the transaction; loaded objects stay usable."""
        with self._reader() as session:
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read session whose statements all see one snapshot of the database (SQLite's
        read transactions always do; PostgreSQL needs REPEATABLE READ), for long reads such
        as an export."""
        with self._reader() as session:
            if not self.is_sqlite:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits when the block ends without error."""
        with self._writer() as session:
            with session.begin():
                yield session

    def sessionmakers(self) -> tuple[sessionmaker, sessionmaker]:
        """The makers of read and write sessions, for session events that must see both."""
        return self._reader, self._writer

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred only).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        write = connection.get_execution_options().get("pallet_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
