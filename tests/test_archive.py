"""The archive format on its own, without a database: write, read back, and refuse every
kind of damaged or hostile archive with a clear error."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile

import pytest

from pallet.transfer import layout, signing
from pallet.transfer.chunks import FileSink, StreamSink
from pallet.transfer.reader import open_files, open_stream
from pallet.transfer.tarstream import BadArchive, header
from pallet.transfer.writer import ArchiveWriter, write_toc_file

BLOBS = [b"alpha" * 1000, b"beta", b"", b"x" * (300 << 10)]


def _header_doc(blobs, added=2, removed=1) -> dict:
    return {"format": "pallet-export", "format_version": 1, "export_id": "e1",
            "created_at": "2026-12-01T00:00:00Z", "exporter": "ex", "incremental": False,
            "repositories": [{"index": 0, "name": "web", "type": "file", "version": 3,
                              "digest": "a" * 64, "counts": {}, "added": added,
                              "removed": removed}],
            "artifacts": len(blobs), "artifact_bytes": sum(len(b) for b in blobs)}


def _units(n=2):
    return [{"type": "file", "fields": {"relative_path": f"f{i}", "sha256": "b" * 64},
             "artifacts": {f"f{i}": "b" * 64}} for i in range(n)]


def write_archive(sink, blobs=BLOBS, private_pem=None, doc=None):
    writer = ArchiveWriter(sink)
    doc = doc or _header_doc(blobs)
    writer.header(doc)
    for data in sorted(blobs, key=lambda b: hashlib.sha256(b).hexdigest()):
        writer.artifact(hashlib.sha256(data).hexdigest(), len(data), io.BytesIO(data))
    writer.units(0, _units())
    writer.removed(0, ["c" * 64])

    def toc_of(chunks):
        toc = {"format": "pallet-export", "format_version": 1, "export_id": "e1",
               "chunks": [c.as_dict() for c in chunks], "summary": doc}
        return signing.sign(toc, private_pem) if private_pem else toc
    return writer.finish(toc_of)


def read_all(reader):
    reader.header()
    found = {}
    for member in reader.artifacts():
        data = b""
        while block := member.read(1 << 16):
            data += block
        found[member.sha256] = data
    units = list(reader.repository_units())
    return found, units, reader.finish()


@pytest.fixture
def chunked(tmp_path):
    sink = FileSink(tmp_path, "export-1.tar", chunk_size=100_000)
    chunks, toc = write_archive(sink)
    write_toc_file(tmp_path / "export-1.toc.json", toc)
    return tmp_path, chunks


def test_chunks_round_trip(chunked):
    directory, chunks = chunked
    assert len(chunks) > 3 and all(c.size == 100_000 for c in chunks[:-1])
    reader, _ = open_files(directory / "export-1.toc.json")
    found, units, toc = read_all(reader)
    assert found == {hashlib.sha256(b).hexdigest(): b for b in BLOBS}
    assert [(u.kind, len(u.lines)) for u in units] == [("added", 2), ("removed", 1)]
    assert toc["chunks"][0]["name"] == "export-1.tar.0000"


def test_a_standard_tar_lists_the_archive(chunked):
    directory, chunks = chunked
    whole = b"".join((directory / c.name).read_bytes() for c in chunks)
    with tarfile.open(fileobj=io.BytesIO(whole)) as archive:
        names = archive.getnames()
    assert names[0] == layout.HEADER and len(names) == 1 + len(BLOBS) + 2


def test_stream_round_trip_with_signature():
    private, public = signing.generate()
    out = io.BytesIO()
    write_archive(StreamSink(out), private_pem=private)
    reader = open_stream(io.BytesIO(out.getvalue()))
    found, _, toc = read_all(reader)
    assert len(found) == len(BLOBS)
    assert signing.verify(toc, [public], required=True) == signing.key_id(public)


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_bit_is_named(chunked):
    directory, chunks = chunked
    _flip(directory / chunks[1].name, 5000)
    reader, _ = open_files(directory / "export-1.toc.json")
    with pytest.raises(BadArchive, match=f"chunk {chunks[1].name} has sha256"):
        read_all(reader)


def test_a_missing_chunk_is_found_before_reading(chunked):
    directory, chunks = chunked
    (directory / chunks[2].name).unlink()
    with pytest.raises(BadArchive, match=f"chunk {chunks[2].name} is missing"):
        open_files(directory / "export-1.toc.json")


def test_a_truncated_chunk_is_found_before_reading(chunked):
    directory, chunks = chunked
    path = directory / chunks[-1].name
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(BadArchive, match="truncated or damaged"):
        open_files(directory / "export-1.toc.json")


def test_reordered_chunks_are_refused(chunked):
    directory, chunks = chunked
    first, second = directory / chunks[0].name, directory / chunks[1].name
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    reader, _ = open_files(directory / "export-1.toc.json")
    with pytest.raises(BadArchive):
        read_all(reader)


def test_a_tampered_toc_fails_its_signature(chunked, tmp_path):
    private, public = signing.generate()
    sink = FileSink(tmp_path, "signed.tar", chunk_size=None)
    _, toc = write_archive(sink, private_pem=private)
    toc["summary"]["repositories"][0]["digest"] = "d" * 64
    with pytest.raises(signing.SignatureError, match="altered after signing"):
        signing.verify(toc, [public], required=True)
    unsigned = {k: v for k, v in toc.items() if k != "signature"}
    with pytest.raises(signing.SignatureError, match="not signed"):
        signing.verify(unsigned, [public], required=True)
    other_private, other_public = signing.generate()
    with pytest.raises(signing.SignatureError, match="does not trust"):
        signing.verify(toc, [other_public], required=False)


def test_a_wrong_format_version_is_refused(tmp_path):
    doc = _header_doc(BLOBS)
    doc["format_version"] = 99
    out = io.BytesIO()
    write_archive(StreamSink(out), doc=doc)
    reader = open_stream(io.BytesIO(out.getvalue()))
    with pytest.raises(BadArchive, match="format version 99"):
        reader.header()


def _tar_with(members) -> bytes:
    """A tar stream of (TarInfo, data) made by Python's tarfile, as a hostile tool would."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _info(name, data=b"", kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = (len(data) if kind == tarfile.REGTYPE else 0,
                                           kind, linkname)
    return info, data if kind == tarfile.REGTYPE else None


def _hostile(*extra):
    doc = json.dumps(_header_doc([b"abc"], added=0, removed=0)).encode()
    return _tar_with([_info(layout.HEADER, doc), *extra])


@pytest.mark.parametrize("member, message", [
    (_info("/etc/passwd", b"x"), "does not belong"),
    (_info("artifacts/../../etc/passwd", b"x"), "does not belong"),
    (_info("artifacts/" + "a" * 64, kind=tarfile.SYMTYPE, linkname="/etc/passwd"),
     "symbolic link"),
    (_info("artifacts/" + "a" * 64, kind=tarfile.LNKTYPE, linkname=layout.HEADER),
     "hard link"),
    (_info("dev", kind=tarfile.CHRTYPE), "character device"),
    (_info("artifacts", kind=tarfile.DIRTYPE), "directory"),
])
def test_hostile_members_are_refused_by_name(member, message):
    reader = open_stream(io.BytesIO(_hostile(member)))
    with pytest.raises(BadArchive, match=message):
        read_all(reader)


def test_duplicate_artifact_members_are_refused():
    sha = hashlib.sha256(b"abc").hexdigest()
    data = _hostile(_info(f"artifacts/{sha}", b"abc"), _info(f"artifacts/{sha}", b"abc"))
    with pytest.raises(BadArchive, match="twice or out of order|more artifacts"):
        read_all(open_stream(io.BytesIO(data)))


def test_a_truncated_stream_is_refused():
    out = io.BytesIO()
    write_archive(StreamSink(out))
    with pytest.raises(BadArchive, match="truncated"):
        read_all(open_stream(io.BytesIO(out.getvalue()[:-3000])))


def test_a_damaged_stream_is_refused():
    out = io.BytesIO()
    write_archive(StreamSink(out))
    data = bytearray(out.getvalue())
    data[2000] ^= 0x40  # inside the first artifact's bytes
    with pytest.raises(BadArchive, match="do not match its table of contents"):
        read_all(open_stream(io.BytesIO(bytes(data))))


def test_big_sizes_use_base_256():
    block = header("artifacts/" + "a" * 64, 9 << 30)
    assert block[124] == 0x80
    from pallet.transfer.tarstream import parse_header
    assert parse_header(block).size == 9 << 30


@pytest.mark.parametrize("document", [b"[" * 100_000 + b"]" * 100_000,
                                      b'{"a": ' + b"9" * 5000 + b"}"])
def test_json_bombs_are_a_clear_error(document, tmp_path):
    from pallet.transfer.tarstream import END, write_member
    out = io.BytesIO()
    write_member(out.write, layout.HEADER, document)
    out.write(END)
    with pytest.raises(BadArchive, match="not valid JSON"):
        open_stream(io.BytesIO(out.getvalue())).header()
    (tmp_path / "x.toc.json").write_bytes(document)
    with pytest.raises(BadArchive, match="not a table of contents"):
        open_files(tmp_path / "x.toc.json")


def test_repository_indices_must_be_their_positions():
    doc = _header_doc(BLOBS)
    doc["repositories"][0]["index"] = 5
    out = io.BytesIO()
    write_archive(StreamSink(out), doc=doc)
    with pytest.raises(BadArchive, match="numbered 0, 1, 2"):
        open_stream(io.BytesIO(out.getvalue())).header()


def test_a_units_member_holds_at_most_its_share_of_lines():
    from pallet.transfer.tarstream import END, write_member
    doc = json.dumps(_header_doc([], added=layout.UNITS_PER_MEMBER + 1, removed=0)).encode()
    line = json.dumps(_units(1)[0]).encode() + b"\n"
    out = io.BytesIO()
    write_member(out.write, layout.HEADER, doc)
    write_member(out.write, layout.units_member(0, "added", 0),
                 line * (layout.UNITS_PER_MEMBER + 1))
    out.write(END)
    with pytest.raises(BadArchive, match="more than 10000 lines"):
        read_all(open_stream(io.BytesIO(out.getvalue())))


def test_bytes_after_the_end_of_a_stream_are_refused():
    out = io.BytesIO()
    write_archive(StreamSink(out))
    with pytest.raises(BadArchive, match="after the archive's end"):
        read_all(open_stream(io.BytesIO(out.getvalue() + b"extra")))


def test_a_chunk_that_cannot_be_written_fails_the_export_and_leaves_no_file(tmp_path):
    """A write failure (here the file size limit, as a full disk would) reaches the
    exporter, and abort removes what was written. A real process, since the limit applies
    to a whole process."""
    script = f"""
import errno, resource, signal
from pathlib import Path
from pallet.transfer.chunks import FileSink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, resource.RLIM_INFINITY))
sink = FileSink(Path({str(tmp_path)!r}), "big.tar", chunk_size=None)
try:
    for _ in range(40):
        sink.write(b"x" * (1 << 20))
    sink.close()
except OSError as exc:
    assert exc.errno == errno.EFBIG, exc
    sink.abort()
    print("failed as expected")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "failed as expected"
    assert list(tmp_path.iterdir()) == []


def _stream_with_header(doc) -> io.BytesIO:
    from pallet.transfer.tarstream import END, write_member
    out = io.BytesIO()
    write_member(out.write, layout.HEADER, json.dumps(doc).encode())
    out.write(END)
    return io.BytesIO(out.getvalue())


@pytest.mark.parametrize("version, shown", [(True, "true"), (1.0, "1.0"), ("1", '"1"'),
                                            (None, "null")])
def test_a_format_version_must_be_the_number_itself(version, shown):
    doc = _header_doc(BLOBS)
    doc["format_version"] = version
    with pytest.raises(BadArchive) as refused:
        open_stream(_stream_with_header(doc)).header()
    assert refused.value.code == "format_version"
    assert f"format version {shown};" in refused.value.message
    assert "reads format version 1" in refused.value.message


@pytest.mark.parametrize("field, value", [("artifacts", "3"), ("artifacts", 3.0),
                                          ("incremental", 0), ("exporter", 5)])
def test_header_fields_are_taken_as_their_json_type_only(field, value):
    doc = _header_doc(BLOBS)
    doc[field] = value
    with pytest.raises(BadArchive) as refused:
        open_stream(_stream_with_header(doc)).header()
    assert refused.value.details["errors"][0]["field"] == field
    text = refused.value.message + json.dumps(refused.value.details)
    assert "pydantic" not in text and "http" not in text and "input_value" not in text


def _peak_while(fn):
    """The peak of memory Python allocated while `fn()` ran, and what it raised."""
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
    except BadArchive as exc:
        return tracemalloc.get_traced_memory()[1], exc
    finally:
        tracemalloc.stop()
    raise AssertionError("not refused")


def _member_stream(name, data, head=None) -> io.BytesIO:
    from pallet.transfer.tarstream import END, write_member
    out = io.BytesIO()
    if head is not None:
        write_member(out.write, layout.HEADER, head)
    write_member(out.write, name, data)
    out.write(END)
    return io.BytesIO(out.getvalue())


@pytest.mark.parametrize("size", [15 << 20, 60 << 20])
def test_a_header_of_countless_tiny_values_is_refused_by_its_shape(size):
    """[{},{},…] costs ~20 times its size once decoded: refused before it is decoded."""
    data = b"[" + b"{}," * (size // 3 - 1) + b"{}]"
    stream = _member_stream(layout.HEADER, data)
    peak, refused = _peak_while(lambda: open_stream(stream).header())
    assert refused.code == "bad_archive" and layout.HEADER in refused.message
    assert peak < 3 * len(data)


def test_a_units_member_of_countless_tiny_values_is_refused_by_its_shape():
    doc = json.dumps(_header_doc([], added=1, removed=0)).encode()
    unit = {"type": "file", "fields": {"relative_path": "a", "sha256": "b" * 64,
                                       "x": "PLACE"}, "artifacts": {}}
    line = json.dumps(unit).encode().replace(b'"PLACE"', b"[" + b"[]," * (20 << 20) + b"[]]")
    stream = _member_stream(layout.units_member(0, "added", 0), line + b"\n", head=doc)

    def read():
        reader = open_stream(stream)
        reader.header()
        list(reader.artifacts())
        list(reader.repository_units())
    peak, refused = _peak_while(read)
    assert "added-000000" in refused.message
    assert peak < 4 * len(line)  # the member, its count, and the reading's buffers


def test_what_a_killed_export_wrote_goes_when_the_next_export_starts(tmp_path):
    """Three chunks of a process killed with SIGKILL mid-export, a whole export beside them:
    the next FileSink in the directory removes the first and keeps the second."""
    whole = FileSink(tmp_path, "done.tar", chunk_size=1 << 20)
    _, toc = write_archive(whole)
    write_toc_file(tmp_path / "done.toc.json", toc)
    kept = sorted(p.name for p in tmp_path.iterdir())
    script = f"""
import os, signal
from pathlib import Path
from pallet.transfer.chunks import FileSink
sink = FileSink(Path({str(tmp_path)!r}), "killed.tar", chunk_size=1 << 20)
sink.write(b"x" * (2 << 20) + b"y" * 1000)
sink._flush()
os.kill(os.getpid(), signal.SIGKILL)
"""
    subprocess.run([sys.executable, "-c", script], timeout=60)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name not in kept)
    assert left and all(name.startswith(("killed", ".killed")) for name in left)
    FileSink(tmp_path, "next.tar", chunk_size=None).abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == kept
    whole.release()  # the export is recorded: its lock goes, its files stay
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "done.tar.0000", "done.toc.json"]
