"""Alembic migrations, run from code: `pallet db upgrade` and the embedded server's start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from pallet.db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db.engine
    return config


def upgrade(db: Database, revision: str = "head", plugins=None) -> None:
    """Migrate the schema to `revision`; at the head, also make the indexes the installed
    plugins' content types declare (`content/fields.py`)."""
    command.upgrade(alembic_config(db), revision)
    if revision == "head":
        from pallet.content.fields import ensure_field_indexes
        from pallet.plugins import load_plugins

        ensure_field_indexes(db, plugins if plugins is not None else load_plugins())


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(db: Database) -> str | None:
    return ScriptDirectory.from_config(alembic_config(db)).get_current_head()
