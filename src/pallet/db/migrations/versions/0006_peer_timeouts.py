"""connect and read timeouts of upstreams and downstreams

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TIMEOUTS = (("connect_timeout", "15"), ("read_timeout", "120"))


def upgrade() -> None:
    # Columns added in place (ALTER TABLE), and their server default kept (it fills the rows
    # there are; new rows get the model's): removing it made SQLite copy the table anew, and
    # dropping the old `upstream` cascaded to every replica row. Databases migrated by the
    # earlier form of this step have no server default, which nothing compares.
    for table in ("upstream", "downstream"):
        for column, default in TIMEOUTS:
            op.add_column(table, sa.Column(column, sa.Float(), nullable=False,
                                           server_default=default))


def downgrade() -> None:
    for table in ("upstream", "downstream"):
        for column, _ in TIMEOUTS:
            op.drop_column(table, column)  # in place too (SQLite 3.35 and later)
