"""remote options: a remote keeps its repository type's sync options, and a sync
fingerprint the options its sync applied (a re-sync with other options looks again)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 14:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

TABLES = ('remote', 'sync_fingerprint')


def upgrade() -> None:
    for table in TABLES:
        # '{}' fills the rows there are: remotes had no options, and the syncs fingerprinted
        # so far applied none. The server default stays: removing it would make SQLite copy
        # the table anew, and dropping the old `remote` deletes, by its foreign keys'
        # cascades, every remote artifact and fingerprint (and unsets repositories' remotes).
        op.add_column(table, sa.Column('options', sa.JSON(), nullable=False,
                                       server_default='{}'))


def downgrade() -> None:
    for table in TABLES:  # ALTER TABLE DROP COLUMN (SQLite 3.35+): no copy, no cascade
        op.drop_column(table, 'options')
