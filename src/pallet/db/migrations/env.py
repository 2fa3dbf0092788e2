"""Alembic environment: runs on the engine Pallet hands over in the config attributes.

On SQLite, a batch step rebuilds a table by copying it and dropping the old one; with foreign
keys enforced, that drop deletes (ON DELETE CASCADE) or orphans every row referencing the
table. So migrations run with enforcement off, and the result is checked before it commits:
a migration that would leave a dangling reference fails instead.
"""

from alembic import context

import pallet.db.models  # noqa: F401  (registers every table on the metadata)
from pallet.db.base import Base

engine = context.config.attributes["engine"]
sqlite = engine.dialect.name == "sqlite"


def _foreign_keys(connection, on: bool) -> None:
    # On the driver's own connection: outside any transaction, where the pragma takes effect.
    connection.connection.driver_connection.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


with engine.connect() as connection:
    if sqlite:
        _foreign_keys(connection, False)
    try:
        with connection.begin():
            context.configure(connection=connection, target_metadata=Base.metadata,
                              render_as_batch=sqlite, compare_type=True)
            context.run_migrations()
            if sqlite:
                dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if dangling:
                    raise RuntimeError(f"the migration would leave {len(dangling)} rows "
                                       f"referencing rows that do not exist, e.g. {dangling[0]}")
    finally:
        if sqlite:
            _foreign_keys(connection, True)
