"""Test harness: every test that touches a database runs on SQLite by default, or on
PostgreSQL when PALLET_TEST_DATABASE_URL names a server (a fresh database is created there).

Isolation per test: on SQLite each test gets a copy of a migrated template file; on
PostgreSQL the tables are emptied between tests.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pallet.db import Database
from pallet.db.migrate import upgrade
from pallet.runtime import Runtime
from pallet.settings import Settings

ADMIN_PASSWORD = "test-admin-password"
KEEP_TABLES = {"alembic_version", "task_dispatch_lock", "serving_generation"}


def _postgres_url() -> str | None:
    return os.environ.get("PALLET_TEST_DATABASE_URL") or None


def _template(tmp_path_factory):
    """A migrated database: a SQLite file to copy, or a PostgreSQL URL to empty per test."""
    server = _postgres_url()
    if server is None:
        path = tmp_path_factory.mktemp("template") / "template.db"
        db = Database(f"sqlite:///{path}")
        upgrade(db)
        db.dispose()
        yield ("sqlite", path)
        return
    name = f"pallet_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    upgrade(db)
    db.dispose()
    yield ("postgresql", url)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def empty_database(folder: Path, label: str):
    """A database with no tables, for a server process or a step-by-step migration: a fresh
    PostgreSQL database (dropped afterwards) or a SQLite file in `folder`. A generator, for
    fixtures to `yield from`."""
    server = _postgres_url()
    if server is None:
        yield f"sqlite:///{folder / f'{label}.db'}"
        return
    name = f"pallet_{label}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _fresh(template, tmp_path: Path, name: str) -> str:
    kind, where = template
    if kind == "sqlite":
        copy = tmp_path / name
        shutil.copy(where, copy)
        return f"sqlite:///{copy}"
    db = Database(where)
    with db.engine.begin() as connection:
        tables = [r[0] for r in connection.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
        doomed = ", ".join(f'"{t}"' for t in tables if t not in KEEP_TABLES)
        connection.execute(text(f"TRUNCATE {doomed} RESTART IDENTITY CASCADE"))
    db.dispose()
    return where


@pytest.fixture(scope="session")
def database_template(tmp_path_factory):
    yield from _template(tmp_path_factory)


@pytest.fixture(scope="session")
def other_database_template(tmp_path_factory):
    """A second server's database, for tests of two servers (export and import)."""
    yield from _template(tmp_path_factory)


@pytest.fixture
def database_url(database_template, tmp_path) -> str:
    return _fresh(database_template, tmp_path, "pallet.db")


@pytest.fixture
def other_database_url(other_database_template, tmp_path) -> str:
    return _fresh(other_database_template, tmp_path, "other.db")


def make_settings(tmp_path: Path, database_url: str, **overrides) -> Settings:
    values = dict(data_dir=tmp_path / "data", database_url=database_url,
                  admin_password=ADMIN_PASSWORD, task_poll_seconds=0.05,
                  worker_heartbeat_seconds=0.5, worker_timeout_seconds=30)
    values.update(overrides)
    return Settings(**values)


def export_settings(tmp_path: Path, database_url: str, **overrides) -> Settings:
    """Settings of a server that may export to (and with `import_too`, import from)
    `tmp_path/exports`, keeping no free-space reserve, for transfer tests."""
    exports = tmp_path / "exports"
    exports.mkdir(exist_ok=True)
    if overrides.pop("import_too", False):
        overrides["allowed_import_dirs"] = [exports]
    return make_settings(tmp_path, database_url, **{"allowed_export_dirs": [exports],
                                                    "import_reserve_bytes": 0, **overrides})


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def runtime(settings):
    runtime = Runtime.create(settings)
    yield runtime
    runtime.close()


@pytest.fixture
def workers(runtime):
    from pallet.tasks.worker import WorkerPool

    pool = WorkerPool(runtime, 2, label="test")
    pool.start()
    yield pool
    pool.stop()


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def client(runtime):
    """An in-process API client, logged in as the first admin."""
    from fastapi.testclient import TestClient

    from pallet.api.app import create_app
    from pallet.auth.service import ensure_first_admin

    with runtime.db.write() as session:
        ensure_first_admin(session, ADMIN_PASSWORD)
    with TestClient(create_app(runtime), headers=basic("admin", ADMIN_PASSWORD)) as test_client:
        yield test_client


def wait_for_task(client, href: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get(href).json()
        if task["state"] in ("completed", "failed", "canceled"):
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {href} did not finish in {timeout} s: {task}")
