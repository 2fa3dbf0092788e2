"""sync publish serve

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('remote',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('url', sa.String(length=4096), nullable=False),
    sa.Column('policy', sa.String(length=16), nullable=False),
    sa.Column('mirror', sa.Boolean(), nullable=False),
    sa.Column('download_concurrency', sa.Integer(), nullable=False),
    sa.Column('max_retries', sa.Integer(), nullable=False),
    sa.Column('connect_timeout', sa.Float(), nullable=False),
    sa.Column('read_timeout', sa.Float(), nullable=False),
    sa.Column('total_timeout', sa.Float(), nullable=True),
    sa.Column('username', sa.String(length=255), nullable=True),
    sa.Column('password', sa.String(length=1024), nullable=True),
    sa.Column('ca_cert', sa.Text(), nullable=True),
    sa.Column('client_cert', sa.Text(), nullable=True),
    sa.Column('client_key', sa.Text(), nullable=True),
    sa.Column('tls_validation', sa.Boolean(), nullable=False),
    sa.Column('proxy_url', sa.String(length=4096), nullable=True),
    sa.Column('proxy_username', sa.String(length=255), nullable=True),
    sa.Column('proxy_password', sa.String(length=1024), nullable=True),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_remote')),
    sa.UniqueConstraint('name', name=op.f('uq_remote_name')),
    sqlite_autoincrement=True
    )
    op.create_table('serving_generation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('generation', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_serving_generation'))
    )
    op.execute("INSERT INTO serving_generation (id, generation) VALUES (1, 0)")
    op.create_table('remote_artifact',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('content_artifact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('remote_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('url', sa.String(length=8192), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['content_artifact_id'], ['content_artifact.id'], name=op.f('fk_remote_artifact_content_artifact_id_content_artifact'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['remote_id'], ['remote.id'], name=op.f('fk_remote_artifact_remote_id_remote'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_remote_artifact')),
    sa.UniqueConstraint('content_artifact_id', 'remote_id', name=op.f('uq_remote_artifact_content_artifact_id')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('remote_artifact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_remote_artifact_remote_id'), ['remote_id'], unique=False)

    op.create_table('publication',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('repository_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('options_digest', sa.String(length=64), nullable=False),
    sa.Column('pass_through', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['repository_id'], ['repository.id'], name=op.f('fk_publication_repository_id_repository'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['repository_version.id'], name=op.f('fk_publication_version_id_repository_version'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_publication')),
    sa.UniqueConstraint('version_id', 'options_digest', name=op.f('uq_publication_version_id')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('publication', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_publication_repository_id'), ['repository_id'], unique=False)

    op.create_table('distribution',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('base_path', sa.String(length=1024), nullable=False),
    sa.Column('publication_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('repository_version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('repository_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('hidden', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['publication_id'], ['publication.id'], name=op.f('fk_distribution_publication_id_publication'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['repository_id'], ['repository.id'], name=op.f('fk_distribution_repository_id_repository'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['repository_version_id'], ['repository_version.id'], name=op.f('fk_distribution_repository_version_id_repository_version'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_distribution')),
    sa.UniqueConstraint('base_path', name=op.f('uq_distribution_base_path')),
    sa.UniqueConstraint('name', name=op.f('uq_distribution_name')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('distribution', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_distribution_publication_id'), ['publication_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_distribution_repository_id'), ['repository_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_distribution_repository_version_id'), ['repository_version_id'], unique=False)

    op.create_table('published_metadata',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('publication_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('relative_path', sa.String(length=1024), nullable=False),
    sa.Column('artifact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifact.id'], name=op.f('fk_published_metadata_artifact_id_artifact'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['publication_id'], ['publication.id'], name=op.f('fk_published_metadata_publication_id_publication'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_published_metadata')),
    sa.UniqueConstraint('publication_id', 'relative_path', name=op.f('uq_published_metadata_publication_id')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('published_metadata', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_published_metadata_artifact_id'), ['artifact_id'], unique=False)

    with op.batch_alter_table('content_artifact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('size', sa.BigInteger(), nullable=True))
    # Every link made before this revision has its artifact: take the size from it.
    op.execute("UPDATE content_artifact SET size = (SELECT artifact.size FROM artifact "
               "WHERE artifact.id = content_artifact.artifact_id)")

    with op.batch_alter_table('repository', schema=None) as batch_op:
        batch_op.add_column(sa.Column('remote_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('autopublish', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('publish_options', sa.JSON(), nullable=False,
                                      server_default='{}'))
        batch_op.create_index(batch_op.f('ix_repository_remote_id'), ['remote_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_repository_remote_id_remote'), 'remote', ['remote_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('repository', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_repository_remote_id_remote'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_repository_remote_id'))
        batch_op.drop_column('publish_options')
        batch_op.drop_column('autopublish')
        batch_op.drop_column('remote_id')

    with op.batch_alter_table('content_artifact', schema=None) as batch_op:
        batch_op.drop_column('size')

    with op.batch_alter_table('published_metadata', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_published_metadata_artifact_id'))

    op.drop_table('published_metadata')
    with op.batch_alter_table('distribution', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_distribution_repository_version_id'))
        batch_op.drop_index(batch_op.f('ix_distribution_repository_id'))
        batch_op.drop_index(batch_op.f('ix_distribution_publication_id'))

    op.drop_table('distribution')
    with op.batch_alter_table('publication', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_publication_repository_id'))

    op.drop_table('publication')
    with op.batch_alter_table('remote_artifact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_remote_artifact_remote_id'))

    op.drop_table('remote_artifact')
    op.drop_table('serving_generation')
    op.drop_table('remote')
