"""Database access: the engine, sessions, table base and migrations."""

from pallet.db.base import Base
from pallet.db.engine import Database

__all__ = ["Base", "Database"]
