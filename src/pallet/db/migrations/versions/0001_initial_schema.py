"""initial schema

Revision ID: 0001
Revises: 
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('artifact',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifact')),
    sa.UniqueConstraint('sha256', name=op.f('uq_artifact_sha256')),
    sqlite_autoincrement=True
    )
    op.create_table('content',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content')),
    sa.UniqueConstraint('digest', name=op.f('uq_content_digest')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('content', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_content_type'), ['type'], unique=False)

    op.create_table('repository',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('retain_versions', sa.Integer(), nullable=True),
    sa.Column('next_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_repository')),
    sa.UniqueConstraint('name', name=op.f('uq_repository_name')),
    sqlite_autoincrement=True
    )
    op.create_table('task_dispatch_lock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_dispatch_lock'))
    )
    # The one row workers lock while they pick the next task.
    op.execute("INSERT INTO task_dispatch_lock (id) VALUES (1)")
    op.create_table('task_group',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_group')),
    sqlite_autoincrement=True
    )
    op.create_table('upload',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload')),
    sqlite_autoincrement=True
    )
    op.create_table('user_account',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('username', sa.String(length=150), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_account')),
    sa.UniqueConstraint('username', name=op.f('uq_user_account_username')),
    sqlite_autoincrement=True
    )
    op.create_table('worker',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_worker'))
    )
    op.create_table('api_token',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=150), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_api_token_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_token_token_hash')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_token_user_id'), ['user_id'], unique=False)

    op.create_table('content_artifact',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('content_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('relative_path', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('artifact_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifact.id'], name=op.f('fk_content_artifact_artifact_id_artifact'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['content_id'], ['content.id'], name=op.f('fk_content_artifact_content_id_content'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content_artifact')),
    sa.UniqueConstraint('content_id', 'relative_path', name=op.f('uq_content_artifact_content_id')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('content_artifact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_content_artifact_artifact_id'), ['artifact_id'], unique=False)
        batch_op.create_index('ix_content_artifact_relative_path', ['relative_path'], unique=False)
        batch_op.create_index(batch_op.f('ix_content_artifact_sha256'), ['sha256'], unique=False)

    op.create_table('repository_content',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('repository_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('content_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version_added', sa.Integer(), nullable=False),
    sa.Column('version_removed', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['content_id'], ['content.id'], name=op.f('fk_repository_content_content_id_content'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['repository_id'], ['repository.id'], name=op.f('fk_repository_content_repository_id_repository'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_repository_content')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('repository_content', schema=None) as batch_op:
        batch_op.create_index('ix_repository_content_added', ['repository_id', 'version_added'], unique=False)
        batch_op.create_index(batch_op.f('ix_repository_content_content_id'), ['content_id'], unique=False)
        batch_op.create_index('ix_repository_content_member', ['repository_id', 'content_id'], unique=False)
        batch_op.create_index('ix_repository_content_removed', ['repository_id', 'version_removed'], unique=False)

    op.create_table('repository_version',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('repository_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('lthash', sa.LargeBinary(), nullable=False),
    sa.Column('digest', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['repository_id'], ['repository.id'], name=op.f('fk_repository_version_repository_id_repository'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_repository_version')),
    sa.UniqueConstraint('repository_id', 'number', name=op.f('uq_repository_version_repository_id')),
    sqlite_autoincrement=True
    )
    op.create_table('task',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('group_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('progress', sa.JSON(), nullable=False),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('created_resources', sa.JSON(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['group_id'], ['task_group.id'], name=op.f('fk_task_group_id_task_group'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_task_group_id'), ['group_id'], unique=False)
        batch_op.create_index('ix_task_state_id', ['state', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_task_worker'), ['worker'], unique=False)

    op.create_table('upload_chunk',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('upload_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['upload_id'], ['upload.id'], name=op.f('fk_upload_chunk_upload_id_upload'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload_chunk')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('upload_chunk', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload_chunk_upload_id'), ['upload_id'], unique=False)

    op.create_table('task_lock',
    sa.Column('task_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resource', sa.String(length=512), nullable=False),
    sa.Column('exclusive', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], name=op.f('fk_task_lock_task_id_task'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id', 'resource', name=op.f('pk_task_lock'))
    )


def downgrade() -> None:
    op.drop_table('task_lock')
    with op.batch_alter_table('upload_chunk', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upload_chunk_upload_id'))

    op.drop_table('upload_chunk')
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_task_worker'))
        batch_op.drop_index('ix_task_state_id')
        batch_op.drop_index(batch_op.f('ix_task_group_id'))

    op.drop_table('task')
    op.drop_table('repository_version')
    with op.batch_alter_table('repository_content', schema=None) as batch_op:
        batch_op.drop_index('ix_repository_content_removed')
        batch_op.drop_index('ix_repository_content_member')
        batch_op.drop_index(batch_op.f('ix_repository_content_content_id'))
        batch_op.drop_index('ix_repository_content_added')

    op.drop_table('repository_content')
    with op.batch_alter_table('content_artifact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_content_artifact_sha256'))
        batch_op.drop_index('ix_content_artifact_relative_path')
        batch_op.drop_index(batch_op.f('ix_content_artifact_artifact_id'))

    op.drop_table('content_artifact')
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_token_user_id'))

    op.drop_table('api_token')
    op.drop_table('worker')
    op.drop_table('user_account')
    op.drop_table('upload')
    op.drop_table('task_group')
    op.drop_table('task_dispatch_lock')
    op.drop_table('repository')
    with op.batch_alter_table('content', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_content_type'))

    op.drop_table('content')
    op.drop_table('artifact')
