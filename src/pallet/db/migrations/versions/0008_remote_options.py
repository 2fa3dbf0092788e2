"""remote options: a remote keeps its repository type's sync options, and a sync
fingerprint the options its sync applied (a re-sync with other options looks again)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 14:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TABLES = ('remote', 'sync_fingerprint')


def upgrade() -> None:
    for table in TABLES:
        # '{}' fills the rows there are: remotes had no options, and the syncs fingerprinted
        # so far applied none. New rows get the model's default.
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('options', sa.JSON(), nullable=False,
                                          server_default='{}'))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('options', server_default=None)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('options')
