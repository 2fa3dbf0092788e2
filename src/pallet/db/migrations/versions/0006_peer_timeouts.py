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
    for table in ("upstream", "downstream"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, default in TIMEOUTS:
                # The default fills the rows there are; new rows get the model's.
                batch_op.add_column(sa.Column(column, sa.Float(), nullable=False,
                                              server_default=default))
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, _ in TIMEOUTS:
                batch_op.alter_column(column, server_default=None)


def downgrade() -> None:
    for table in ("upstream", "downstream"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, _ in TIMEOUTS:
                batch_op.drop_column(column)
