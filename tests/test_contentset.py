"""The content-set algebra and digest, without a database."""

import hashlib
import random

import pytest

from pallet.repositories.contentset import (EMPTY_DIGEST, LtHash, carry_counts, diff, digest_of,
                                            plan_change)


def ident(i: int) -> str:
    return hashlib.sha256(f"unit-{i}".encode()).hexdigest()


def test_digest_ignores_order_and_batching():
    ids = [ident(i) for i in range(5000)]
    shuffled = ids[:]
    random.Random(7).shuffle(shuffled)
    assert digest_of(ids) == digest_of(shuffled)
    assert LtHash().add(ids[:10]).add(ids[10:]).digest == digest_of(ids)


def test_incremental_digest_equals_recomputation():
    state = LtHash().add(ident(i) for i in range(1000))
    state.remove(ident(i) for i in range(0, 1000, 3)).add(ident(i) for i in range(1000, 1100))
    expected = [ident(i) for i in range(1000) if i % 3] + [ident(i) for i in range(1000, 1100)]
    assert state.digest == digest_of(expected)


def test_different_sets_have_different_digests():
    base = [ident(i) for i in range(100)]
    assert digest_of(base) != digest_of(base[:-1])
    assert digest_of(base) != digest_of(base[:-1] + [ident(1000)])
    # An element counted twice is not the same set as the element once.
    assert digest_of(base[:1] * 2) != digest_of(base[:1])


def test_empty_set_and_state_round_trip():
    assert digest_of([]) == EMPTY_DIGEST
    state = LtHash().add(ident(i) for i in range(10))
    assert LtHash(state.state) == state
    assert LtHash(state.state).remove(ident(i) for i in range(10)).digest == EMPTY_DIGEST
    with pytest.raises(ValueError):
        LtHash(b"short")


def test_lanes_wrap_modulo_2_16():
    # Removing from the empty set wraps around, and adding back returns to empty.
    assert LtHash().remove([ident(1)]).add([ident(1)]).digest == EMPTY_DIGEST


def test_plan_change_from_touched_units_only():
    change = plan_change(present={1, 2}, add={2, 3}, remove={1, 4})
    assert change.added == {3}          # 2 is present already
    assert change.removed == {1}        # 4 was never present
    assert plan_change(present={1}, add={1}, remove={1}).removed == frozenset()  # add wins
    assert not plan_change(present={1}, add={1}, remove=set())


def test_diff_and_counts():
    added, removed = diff({1, 2, 3}, {2, 3, 4, 5})
    assert (added, removed) == ({4, 5}, {1})
    counts = carry_counts({"file": {"added": 3, "removed": 0, "present": 3}},
                          {"file": 2}, {"file": 1})
    assert counts == {"file": {"added": 2, "removed": 1, "present": 4}}
    with pytest.raises(ValueError):
        carry_counts({}, {}, {"file": 1})


def test_digest_definition_is_pinned():
    # Equal sets must have equal digests on every server and release: these values may
    # never change (docs/developers.md defines the computation).
    assert EMPTY_DIGEST == "e5a00aa9991ac8a5ee3109844d84a55583bd20572ad3ffcd42792f3c36b183ad"
    pair = [hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()]
    assert digest_of(pair) == "3afd90332421bc365310f20dcbca379cdcc16f7990c72d0aea6d8f52d88ab889"
