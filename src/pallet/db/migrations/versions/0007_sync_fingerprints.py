"""sync fingerprints: a re-sync that reads the same repomd.xml onto the same version stops

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table(
        'sync_fingerprint',
        sa.Column('repository_id', big, nullable=False),
        sa.Column('remote_id', big, nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('policy', sa.String(length=16), nullable=False),
        sa.Column('mirror', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['remote_id'], ['remote.id'],
                                name=op.f('fk_sync_fingerprint_remote_id_remote'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['repository_id'], ['repository.id'],
                                name=op.f('fk_sync_fingerprint_repository_id_repository'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('repository_id', 'remote_id',
                                name=op.f('pk_sync_fingerprint')))


def downgrade() -> None:
    op.drop_table('sync_fingerprint')
