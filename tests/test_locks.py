"""The lock-conflict rules, as pure functions."""

from pallet.tasks.locks import Lock, QueuedTask, conflicts, make_locks, runnable


def task(id_, running=False, exclusive=(), shared=()):
    return QueuedTask(id_, running, make_locks(exclusive, shared))


def test_conflicts():
    assert conflicts(Lock("a", True), Lock("a", False))
    assert conflicts(Lock("a", True), Lock("a", True))
    assert not conflicts(Lock("a", False), Lock("a", False))
    assert not conflicts(Lock("a", True), Lock("b", True))


def test_exclusive_wins_over_shared_for_one_resource():
    assert make_locks(["a"], ["a", "b"]) == (Lock("a", True), Lock("b", False))


def test_running_exclusive_blocks_and_shared_readers_share():
    assert runnable([task(1, True, exclusive=["r"]), task(2, shared=["r"])]) == []
    assert runnable([task(1, True, shared=["r"]), task(2, shared=["r"])]) == [2]
    assert runnable([task(1, True, exclusive=["r"]), task(2, exclusive=["s"])]) == [2]


def test_first_in_first_out_per_resource():
    # A waiting exclusive task keeps later shared ones from overtaking it.
    tasks = [task(1, True, shared=["r"]), task(2, exclusive=["r"]), task(3, shared=["r"])]
    assert runnable(tasks) == []
    # Two waiting conflicting tasks: only the earlier may start.
    assert runnable([task(5, exclusive=["r"]), task(4, exclusive=["r"])]) == [4]
    assert runnable([task(1, exclusive=["a"]), task(2, exclusive=["a", "b"]),
                     task(3, exclusive=["b"])]) == [1]
