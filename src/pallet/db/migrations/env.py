"""Alembic environment: runs on the engine Pallet hands over in the config attributes."""

from alembic import context

import pallet.db.models  # noqa: F401  (registers every table on the metadata)
from pallet.db.base import Base

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=engine.dialect.name == "sqlite", compare_type=True)
    context.run_migrations()
