"""The local artifact store: verified, atomic, content-addressed."""

import hashlib
import os
import subprocess
import sys
import threading

import pytest

from pallet.artifacts.storage import LAYOUT, DigestMismatch, LocalStorage
from pallet.errors import Invalid, PalletError


def test_write_verifies_and_places_by_digest(tmp_path):
    storage = LocalStorage(tmp_path)
    data = b"hello pallet"
    digest = hashlib.sha256(data).hexdigest()
    with storage.writer() as writer:
        writer.write(data[:5])
        writer.write(data[5:])
        assert writer.commit(digest) == digest
    assert storage.path(digest) == tmp_path / digest[:2] / digest
    with storage.open(digest) as stream:
        assert stream.read() == data
    assert storage.hash_stored(digest) == digest


def test_a_mismatch_stores_nothing(tmp_path):
    storage = LocalStorage(tmp_path)
    with storage.writer() as writer, pytest.raises(DigestMismatch):
        writer.write(b"bytes")
        writer.commit("0" * 64)
    assert not storage.exists(hashlib.sha256(b"bytes").hexdigest())
    assert list(storage.tmp.iterdir()) == []


def test_an_abandoned_write_leaves_no_temporary_file(tmp_path):
    storage = LocalStorage(tmp_path)
    with pytest.raises(RuntimeError):
        with storage.writer() as writer:
            writer.write(b"partial")
            raise RuntimeError("client went away")
    assert list(storage.tmp.iterdir()) == []


def test_ingest_moves_a_verified_file_in(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    source = tmp_path / "incoming"
    source.write_bytes(b"x" * 3000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    with pytest.raises(DigestMismatch):
        storage.ingest(source, "f" * 64)
    assert source.exists() and not storage.exists(digest)
    assert storage.ingest(source, digest) == (digest, 3000)
    assert not source.exists() and storage.exists(digest)


def test_paths_come_only_from_digests(tmp_path):
    storage = LocalStorage(tmp_path)
    for bad in ("../../etc/passwd", "ab", "G" * 64, "A" * 64):
        with pytest.raises(Invalid):
            storage.path(bad)


def _layout_1_store(root, count):
    """A store as layout 1 kept it: artifacts two folders deep, no marker file."""
    blobs = {}
    for i in range(count):
        data = f"artifact {i}".encode()
        digest = hashlib.sha256(data).hexdigest()
        folder = root / digest[:2] / digest[2:4]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / digest).write_bytes(data)
        blobs[digest] = data
    return blobs


def test_a_layout_1_store_is_moved_to_layout_2_once(tmp_path):
    blobs = _layout_1_store(tmp_path, 40)
    first = next(iter(blobs))
    stranger = tmp_path / first[:2] / first[2:4] / "notes.txt"
    stranger.write_text("not an artifact")

    storage = LocalStorage(tmp_path)

    assert (tmp_path / ".layout").read_text() == LAYOUT + "\n"
    for digest, data in blobs.items():
        assert storage.path(digest) == tmp_path / digest[:2] / digest
        assert storage.exists(digest) and storage.read(digest, 100) == data
    assert stranger.read_text() == "not an artifact"  # left where it was, folder and all
    emptied = [p for p in tmp_path.glob("??/??") if p.is_dir()]
    assert emptied == [stranger.parent]
    LocalStorage(tmp_path)  # opened again: nothing to do, nothing lost
    assert all(storage.read(digest, 100) == data for digest, data in blobs.items())


def test_an_interrupted_move_is_finished_by_the_next_open(tmp_path):
    blobs = _layout_1_store(tmp_path, 20)
    done = sorted(blobs)[:7]  # these were moved before the process died; no marker yet
    for digest in done:
        (tmp_path / digest[:2] / digest[2:4] / digest).rename(tmp_path / digest[:2] / digest)
    assert not (tmp_path / ".layout").exists()

    storage = LocalStorage(tmp_path)

    assert all(storage.read(digest, 100) == data for digest, data in blobs.items())
    assert not [p for p in tmp_path.glob("??/??") if p.is_dir()]


def test_stores_opened_together_on_a_layout_1_store_move_it_once(tmp_path):
    blobs = _layout_1_store(tmp_path, 300)
    errors = []

    def open_store():
        try:
            storage = LocalStorage(tmp_path)
            assert all(storage.exists(digest) for digest in blobs)
        except Exception as exc:  # reported below: a thread's assert would be lost
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.glob("??/*") if p.is_file()) == sorted(blobs)


def test_a_store_of_an_unknown_layout_is_left_untouched(tmp_path):
    blobs = _layout_1_store(tmp_path, 3)
    (tmp_path / ".layout").write_text("9\n")
    with pytest.raises(PalletError, match="layout '9'"):
        LocalStorage(tmp_path)
    assert (tmp_path / ".layout").read_text() == "9\n"
    assert all((tmp_path / d[:2] / d[2:4] / d).is_file() for d in blobs)


def test_serve_refuses_a_store_of_an_unknown_layout_in_one_line(tmp_path):
    store = tmp_path / "artifacts"
    store.mkdir()
    (store / ".layout").write_text("9\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_")}
    env.update(PALLET_DATA_DIR=str(tmp_path), PALLET_PORT="1")  # never listens: it stops first
    result = subprocess.run([sys.executable, "-m", "pallet.cli.main", "serve"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "has layout '9'; this Pallet knows layout 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_temporary_files_of_a_dead_owner_go_at_the_next_start(tmp_path):
    """A process killed mid-write leaves its temporary folder; its lock is then free, and
    the next store object on the same root removes it, leaving live owners' alone."""
    live = LocalStorage(tmp_path)
    code = ("import os, signal, sys; from pathlib import Path\n"
            "from pallet.artifacts.storage import LocalStorage\n"
            "storage = LocalStorage(Path(sys.argv[1]))\n"
            "writer = storage.writer(); writer.write(b'half'); writer._file.flush()\n"
            "print(storage.tmp.name, flush=True); os.kill(os.getpid(), signal.SIGKILL)\n")
    dead = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True).stdout.strip()
    assert [p.name for p in (tmp_path / ".tmp" / dead).iterdir()][0].startswith("incoming-")
    with open(live.tmp / "in-use", "wb"):
        again = LocalStorage(tmp_path)
    assert not (tmp_path / ".tmp" / dead).exists()
    assert not (tmp_path / ".tmp" / f"{dead}.lock").exists()
    assert (live.tmp / "in-use").exists()
    again.close()
    assert not again.tmp.exists()
    live.close()


def test_staged_bytes_stay_out_of_the_store_until_placed_a_batch_at_a_time(tmp_path):
    storage = LocalStorage(tmp_path)
    staging = storage.staging()
    blobs = [f"blob {i}".encode() for i in range(5)]
    shas = [hashlib.sha256(b).hexdigest() for b in blobs]
    for data, sha in zip(blobs, shas):
        staging.put_bytes(data, sha, group=3)
    with pytest.raises(DigestMismatch):
        staging.put_bytes(b"other bytes", shas[0], group=3)
    assert not any(storage.exists(sha) for sha in shas) and staging.groups() == [3]
    sizes = []
    for files in staging.staged(3, batch=2):
        sizes.append(len(files))
        for sha, size, path in files:
            assert storage.place(path, sha) and size == len(blobs[shas.index(sha)])
    assert sizes == [2, 2, 1] and all(storage.exists(sha) for sha in shas)
    assert staging.groups() == [] and list(staging.dir.iterdir()) == []
    staging.discard()
    assert list(storage.tmp.iterdir()) == []


def test_a_staged_writer_joins_the_group_it_ends_in(tmp_path):
    # An import's artifact above SMALL is streamed through a writer; its group is the chunk
    # its last byte came from, known only when it is committed.
    storage = LocalStorage(tmp_path)
    staging = storage.staging()
    data = os.urandom(3 << 20)
    group = [0]
    with staging.writer(lambda: group[0]) as writer:
        writer.write(data)
        group[0] = 2
        writer.commit(hashlib.sha256(data).hexdigest())
    assert staging.groups() == [2]
    batches = staging.staged(2, batch=10)
    [(sha, size, _)] = next(batches)
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    # Not moved away: asking for the next batch is refused, not the same batch forever.
    with pytest.raises(RuntimeError, match="moved away"):
        next(batches)
    staging.discard()
