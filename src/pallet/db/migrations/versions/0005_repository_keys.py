"""repository keys: one unit per key in a version

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 13:50:00

Every membership row gets its unit's repository key digest, computed by the installed
content-type plugins (a unit of a type no plugin knows keeps its identity digest as its key).
Rows of a repository that held two units with the same key in one version before this
revision keep a NULL key: those versions keep their content and their digest, and the next
version made from them resolves the duplicates (the newest unit wins).
"""

from itertools import groupby

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BATCH = 5000

content = sa.table("content", sa.column("id", sa.Integer), sa.column("type", sa.String),
                   sa.column("digest", sa.String), sa.column("data", sa.JSON))
members = sa.table("repository_content", sa.column("id", sa.Integer),
                   sa.column("repository_id", sa.Integer), sa.column("content_id", sa.Integer),
                   sa.column("version_added", sa.Integer),
                   sa.column("version_removed", sa.Integer),
                   sa.column("repository_key", sa.String))


def upgrade() -> None:
    with op.batch_alter_table('repository_content', schema=None) as batch_op:
        batch_op.add_column(sa.Column('repository_key', sa.String(length=64), nullable=True))
    connection = op.get_bind()
    _fill_keys(connection)
    _clear_overlapping(connection)
    op.create_index('uq_repository_content_open_key', 'repository_content',
                    ['repository_id', 'repository_key'], unique=True,
                    sqlite_where=sa.text('version_removed IS NULL'),
                    postgresql_where=sa.text('version_removed IS NULL'))


def downgrade() -> None:
    op.drop_index('uq_repository_content_open_key', table_name='repository_content')
    with op.batch_alter_table('repository_content', schema=None) as batch_op:
        batch_op.drop_column('repository_key')


def _fill_keys(connection) -> None:
    from pallet.content.identity import repository_key_digest
    from pallet.plugins import load_plugins

    types = load_plugins().content_types
    set_key = (sa.update(members).where(members.c.content_id == sa.bindparam("cid"))
               .values(repository_key=sa.bindparam("key")))
    last = 0
    while True:
        rows = connection.execute(sa.select(content.c.id, content.c.type, content.c.digest,
                                            content.c.data)
                                  .where(content.c.id > last).order_by(content.c.id)
                                  .limit(BATCH)).all()
        if not rows:
            return
        values = []
        for id_, type_, digest, data in rows:
            known = types.get(type_)
            key = digest if known is None else repository_key_digest(
                type_, data, known.repository_key_fields)
            values.append({"cid": id_, "key": key})
        connection.execute(set_key, values)
        last = rows[-1][0]


def _clear_overlapping(connection) -> None:
    """NULL the key on every row of a (repository, key) whose rows overlap in some version."""
    shared = (sa.select(members.c.repository_id, members.c.repository_key)
              .group_by(members.c.repository_id, members.c.repository_key)
              .having(sa.func.count() > 1).subquery())
    rows = connection.execute(
        sa.select(members.c.repository_id, members.c.repository_key, members.c.id,
                  members.c.version_added, members.c.version_removed)
        .join(shared, sa.and_(shared.c.repository_id == members.c.repository_id,
                              shared.c.repository_key == members.c.repository_key))
        .order_by(members.c.repository_id, members.c.repository_key,
                  members.c.version_added)).all()
    doomed = []
    for _, group in groupby(rows, key=lambda r: (r[0], r[1])):
        group = list(group)
        if _overlap(group):
            doomed.extend({"row": r[2]} for r in group)
    if doomed:
        connection.execute(sa.update(members).where(members.c.id == sa.bindparam("row"))
                           .values(repository_key=None), doomed)


def _overlap(rows) -> bool:
    """Rows sorted by version_added: does one start before the one before it ends?"""
    for before, after in zip(rows, rows[1:]):
        if before[4] is None or after[3] < before[4]:
            return True
    return False
