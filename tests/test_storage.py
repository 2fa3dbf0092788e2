"""The local artifact store: verified, atomic, content-addressed."""

import hashlib

import pytest

from pallet.artifacts.storage import DigestMismatch, LocalStorage
from pallet.errors import Invalid


def test_write_verifies_and_places_by_digest(tmp_path):
    storage = LocalStorage(tmp_path)
    data = b"hello pallet"
    digest = hashlib.sha256(data).hexdigest()
    with storage.writer() as writer:
        writer.write(data[:5])
        writer.write(data[5:])
        assert writer.commit(digest) == digest
    assert storage.path(digest) == tmp_path / digest[:2] / digest[2:4] / digest
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
