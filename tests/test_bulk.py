"""Set-at-a-time look-ups: a batch of text values given as one parameter finds exactly the
rows whose column is one of them, whatever characters the values hold. Rows streamed from
the driver."""

import json

from sqlalchemy import insert, select

from pallet.content.bulk import TEXT_BATCH, among_text, text_batches
from pallet.content.models import Content
from pallet.db.bulk import driver_rows

AWKWARD = ['a"b', "c\\d", "e,f", "{x}", " sp ", "NULL", "ü", "'q'", "", 'x\\"y', "}{", "a b"]


def test_among_text_matches_awkward_values_exactly(runtime):
    with runtime.db.write() as session:
        session.execute(insert(Content), [{"type": "t", "digest": v, "data": {}}
                                          for v in AWKWARD + ["other", "NULLS"]])
    with runtime.db.read() as session:
        found = list(session.scalars(select(Content.digest)
                                     .where(among_text(session, Content.digest, AWKWARD))))
    assert sorted(found) == sorted(AWKWARD)


def test_among_text_takes_a_whole_batch(runtime):
    values = [f"{i:064x}" for i in range(TEXT_BATCH + 5)]
    with runtime.db.write() as session:
        session.execute(insert(Content), [{"type": "t", "digest": v, "data": {}}
                                          for v in values[::2]])
    with runtime.db.read() as session:
        found = set()
        for batch in text_batches(values):
            found.update(session.scalars(select(Content.digest)
                                         .where(among_text(session, Content.digest, batch))))
    assert found == set(values[::2])


def test_driver_rows_give_json_as_text_on_both_databases(runtime):
    """Streams decode a row's JSON when they reach it (psycopg decoding a fetched batch
    whole held it all in memory at once); rows come batch by batch, in order."""
    units = [{"type": "t", "digest": f"{i:064x}", "data": {"n": i, "files": [["a", i]]}}
             for i in range(25)]
    with runtime.db.write() as session:
        session.execute(insert(Content), units)
    with runtime.db.read() as session:
        rows = list(driver_rows(session, select(Content.digest, Content.data)
                                .order_by(Content.digest), batch=4))
    assert all(isinstance(data, str) for _, data in rows)
    assert [(digest, json.loads(data)) for digest, data in rows] == [
        (unit["digest"], unit["data"]) for unit in units]
