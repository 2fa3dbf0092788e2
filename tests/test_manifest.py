"""Pulp's PULP_MANIFEST, exactly: lines as Pulp writes them are read as Pulp reads them (split
at the last two commas, fields stripped, blank and `#` lines skipped), Pallet writes fields
raw as Pulp does, and a path that cannot travel in a manifest is refused where it enters."""

from __future__ import annotations

import hashlib
import io

import pytest
from sqlalchemy import select

from pallet.artifacts.models import Artifact
from pallet.content.identity import identity_digest
from pallet.content.models import Content, ContentArtifact
from pallet.errors import Invalid, PalletError
from pallet.plugin import PublishedFile, PublishedUnit
from pallet.plugins.file import FilePublishOptions, FileUnit, publish_manifest, read_manifest
from pallet.repositories import service as repositories
from pallet.repositories.versions import create_version, latest_version
from pallet.tasks.worker import TaskContext
from pallet.transfer import service, tasks
from pallet.transfer.chunks import StreamSink
from pallet.transfer.export import Selection, header, write_archive
from tests.conftest import wait_for_task
from tests.factories import store_bytes
from tests.http_fixtures import file_server, sha256  # noqa: F401

# Paths Pulp's sync accepts and Pallet quoted as CSV before: commas, quotes, spaces inside.
ODD = {"comma/a,b.bin": b"comma", 'quote/say "hi".bin': b"quote", "sp ace/x y.txt": b"space",
       'both/"a,b",c.bin': b"both", "plain.txt": b"plain"}


def pulp_line(path: str, data: bytes) -> str:
    """A line exactly as pulp_file writes it: the fields joined raw."""
    return ",".join([path, sha256(data), str(len(data))]) + "\n"


def pulp_parse(text: str) -> list[tuple[str, str, int]]:
    """Lines exactly as pulp_file reads them."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path, digest, size = (field.strip() for field in line.rsplit(",", 2))
        entries.append((path, digest, int(size)))
    return entries


def read(text: str) -> dict[str, tuple[str, int, str]]:
    units = read_manifest(io.BytesIO(text.encode()), "http://127.0.0.1:1/repo/")
    return {u.fields["relative_path"]: (u.fields["sha256"], f.size, f.url)
            for u in units for f in u.files.values()}


# -- reading ---------------------------------------------------------------------------------

def test_lines_as_pulp_writes_them_are_read_as_pulp_reads_them():
    text = ("# a comment, with commas, 1\n\n   \n"
            + "".join(pulp_line(p, d) for p, d in ODD.items())
            + f"  spaced.bin  ,  {sha256(b'x')}  , 1 \r\n"
            + "   # an indented comment\n")
    found = read(text)
    assert set(found) == set(ODD) | {"spaced.bin"}
    for path, data in ODD.items():
        assert found[path][:2] == (sha256(data), len(data))
    assert found["comma/a,b.bin"][2] == "http://127.0.0.1:1/repo/comma/a%2Cb.bin"
    assert found['quote/say "hi".bin'][2] == "http://127.0.0.1:1/repo/quote/say%20%22hi%22.bin"
    assert found["spaced.bin"][:2] == (sha256(b"x"), 1)


def test_lines_end_where_pulp_ends_them():
    """Pulp reads its manifest in Python's text mode: only \n, \r\n and \r end a line, not
    the other separators str.splitlines knows (U+2028, U+0085 and such)."""
    odd = {"sep/a\u2028b.txt": b"ls", "sep/c\u2029d.txt": b"ps"}
    text = "".join(pulp_line(p, d).replace("\n", "\r\n") for p, d in odd.items())
    assert set(read(text)) == set(odd)
    assert set(read(published(odd))) == set(odd)


def test_a_huge_line_or_bytes_that_are_not_utf8_name_their_line():
    first = pulp_line("a", b"a").encode()
    for tail, words in ((b"x" * 20000 + b",a,1\n", "longer than 8192"),
                        (b"caf\xe9,a,1\n" + first, "not UTF-8")):
        index = io.BytesIO(first + tail)
        with pytest.raises(Invalid, match=words) as caught:
            list(read_manifest(index, "http://127.0.0.1:1/"))
        assert caught.value.details == {"line": 2} and not index.closed


def test_a_line_without_two_commas_names_its_line():
    with pytest.raises(Invalid, match="line 2") as caught:
        read(pulp_line("a", b"a") + "no-commas-here\n")
    assert caught.value.details == {"line": 2}


# -- writing ---------------------------------------------------------------------------------

class _Output:
    def __init__(self) -> None:
        self.files: dict[str, io.BytesIO] = {}

    def open(self, relative_path: str):
        buffer = self.files[relative_path] = _Kept()
        return buffer


class _Kept(io.BytesIO):
    def close(self) -> None:
        self.kept = self.getvalue()
        super().close()


def published(paths: dict[str, bytes]) -> str:
    units = [PublishedUnit("file", {"relative_path": p, "sha256": sha256(d)},
                           [PublishedFile(p, sha256(d), len(d))]) for p, d in paths.items()]
    output = _Output()
    publish_manifest(iter(units), FilePublishOptions(), output)
    return output.files["PULP_MANIFEST"].kept.decode()


def test_pallet_writes_fields_raw_so_pulp_reads_the_same_paths():
    text = published(ODD)
    assert sorted(text.splitlines()) == sorted(pulp_line(p, d).rstrip("\n")
                                               for p, d in ODD.items())
    assert sorted(pulp_parse(text)) == sorted((p, sha256(d), len(d)) for p, d in ODD.items())
    assert set(read(text)) == set(ODD)  # and Pallet reads its own manifest back


def test_a_stored_path_that_cannot_travel_fails_the_publish_clearly():
    with pytest.raises(Invalid, match="PULP_MANIFEST"):
        published({" lead.txt": b"x"})


# -- where paths enter -----------------------------------------------------------------------

UNFIT = [" lead.txt", "trail.txt ", "dir/x.txt\t", "\u00a0nbsp.txt", "#hash.txt", "a\nb.txt"]


@pytest.mark.parametrize("path", UNFIT)
def test_the_file_unit_refuses_a_path_that_cannot_travel_in_a_manifest(path):
    with pytest.raises(Invalid, match="relative_path"):
        FileUnit(relative_path=path, sha256="a" * 64)


def test_paths_pulp_accepts_are_file_units():
    for path in [*ODD, "dir/#not-first.txt", "a b/ c", "x/#y"]:
        assert FileUnit(relative_path=path, sha256="a" * 64).relative_path == path


def test_the_api_refuses_them_with_the_reason(client, runtime):
    sha = store_bytes(runtime, b"api")
    for path, reason in ((" lead.txt", "whitespace"), ("trail.txt ", "whitespace"),
                         ("#hash.txt", "'#'")):
        response = client.post("/api/v1/content/file",
                               json={"relative_path": path, "sha256": sha})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid" and reason in error["message"], error
        assert "PULP_MANIFEST" in error["message"]
    with runtime.db.read() as session:
        assert session.scalars(select(Content)).all() == []
    ok = client.post("/api/v1/content/file", json={"relative_path": "comma/a,b.bin",
                                                   "sha256": sha})
    assert ok.status_code == 201, ok.text


def test_sync_from_a_pulp_style_manifest_with_commas_and_quotes(client, workers, runtime,
                                                               tmp_path, file_server):
    root = tmp_path / "pulp"
    for path, data in ODD.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    (root / "PULP_MANIFEST").write_text("# written by pulp_file\n\n" + "".join(
        pulp_line(p, d) for p, d in ODD.items()))
    server = file_server(root)
    assert client.post("/api/v1/remotes", json={"name": "pulp", "url": server.url,
                                                "max_retries": 0}).status_code == 201
    assert client.post("/api/v1/repositories", json={"name": "mirror"}).status_code == 201
    task = wait_for_task(client, client.post("/api/v1/repositories/mirror/sync",
                                             json={"remote": "pulp"}).json()["href"])
    assert task["state"] == "completed", task["error"]
    assert task["result"]["units"] == len(ODD)
    body = client.get("/api/v1/content", params={"repository": "mirror"}).json()
    got = {a["relative_path"]: a["sha256"] for c in body["results"] for a in c["artifacts"]}
    assert got == {p: sha256(d) for p, d in ODD.items()}
    for data in ODD.values():
        assert runtime.storage.exists(hashlib.sha256(data).hexdigest())


def test_an_archive_bringing_such_a_path_is_refused_and_changes_nothing(runtime, tmp_path):
    """A unit recorded before the rule (written here straight into the tables) cannot be
    imported: the import validates it as the plugin says."""
    data = b"old"
    sha = store_bytes(runtime, data)
    key = {"relative_path": " old.txt", "sha256": sha}
    with runtime.db.write() as session:
        artifact_id = session.scalar(select(Artifact.id).where(Artifact.sha256 == sha))
        unit = Content(type="file", digest=identity_digest("file", key), data=key,
                       artifacts=[ContentArtifact(relative_path=" old.txt", sha256=sha,
                                                  size=len(data), artifact_id=artifact_id)])
        session.add(unit)
        session.flush()
        repo = repositories.create_repository(session, runtime.plugins, name="web",
                                              type="file")
        create_version(session, runtime.plugins, repo, add=[unit.id])
    target = tmp_path / "web.tar"
    with runtime.db.snapshot() as session, open(target, "wb") as out:
        repo = repositories.get_repository(session, "web")
        chosen = [Selection(repo, latest_version(session, repo))]
        write_archive(session, runtime.storage, chosen, header(session, chosen, exporter="x"),
                      StreamSink(out))
    runtime.settings.allowed_import_dirs.append(tmp_path)
    with runtime.db.write() as session:
        importer_id = service.create_importer(session, name="im", create_repositories=True,
                                              mapping={"web": "copy"}).id
    with pytest.raises(PalletError, match="PULP_MANIFEST"):
        tasks.import_archive(runtime, TaskContext(0), importer_id=importer_id,
                             path=str(target))
    with runtime.db.read() as session:
        with pytest.raises(PalletError):
            repositories.get_repository(session, "copy")
