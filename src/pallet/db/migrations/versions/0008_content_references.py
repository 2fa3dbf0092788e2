"""content references: the units a unit names (an advisory its packages), stored with it

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 15:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table(
        'content_reference',
        sa.Column('id', big, nullable=False),
        sa.Column('content_id', big, nullable=False),
        sa.Column('type', sa.String(length=64), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=True),
        sa.Column('fields', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['content_id'], ['content.id'],
                                name=op.f('fk_content_reference_content_id_content'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_content_reference')),
        sqlite_autoincrement=True)
    op.create_index('ix_content_reference_key', 'content_reference', ['key'])
    op.create_index(op.f('ix_content_reference_content_id'), 'content_reference',
                    ['content_id'])
    # In place (ALTER TABLE), never by copying the table: on SQLite, dropping the old copy
    # would cascade to the rows that reference versions.
    op.add_column('repository_version', sa.Column('broken_references', sa.JSON(),
                                                  nullable=True))


def downgrade() -> None:
    op.drop_column('repository_version', 'broken_references')  # in place, as above
    op.drop_table('content_reference')
