"""Migrations keep what the database holds: steps alter tables in place, never by copying a
table anew on SQLite, whose drop of the old copy cascades to the rows that reference it."""

import pytest
from sqlalchemy import text

from pallet.db import Database
from pallet.db.migrate import upgrade
from pallet.plugins import load_plugins
from pallet.repositories import service
from tests.conftest import empty_database


@pytest.fixture
def empty_database_url(tmp_path):
    yield from empty_database(tmp_path, "migrations")


def test_migrating_from_0005_keeps_every_replica(empty_database_url):
    """0006 adds the peers' timeouts in place: copying `upstream` anew on SQLite (to drop a
    server default) cascaded to the replica rows."""
    db = Database(empty_database_url)
    upgrade(db, "0005")
    plugins = load_plugins()
    with db.write() as session:
        repository = service.create_repository(session, plugins, name="web", type="file")
        session.execute(text(
            "INSERT INTO upstream (name, base_url, tls_validation, repositories, distributions, "
            "base_path_prefix, remove_missing, created_at, updated_at) VALUES ('up', "
            "'https://up.example/', true, '[]', '[]', '', false, '2026-12-01 00:00:00', "
            "'2026-12-01 00:00:00')"))
        session.execute(text(
            "INSERT INTO replica (upstream_id, source, repository_id, version, digest, "
            "replicated_at) SELECT id, 'web', :repository, 0, :digest, '2026-12-01 00:00:00' "
            "FROM upstream"), {"repository": repository.id, "digest": "0" * 64})
    upgrade(db)
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM replica")).scalar() == 1
        assert session.execute(text("SELECT connect_timeout FROM upstream")).scalar() == 15
    db.dispose()


def test_foreign_keys_are_enforced_again_after_migrating(empty_database_url):
    db = Database(empty_database_url)
    upgrade(db)
    with db.read() as session:
        if session.get_bind().dialect.name == "sqlite":
            assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.dispose()
