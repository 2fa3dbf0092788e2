"""Export on one server, import on another (two databases, two data directories): exact
copies, full and incremental, checked before acting, and refusals that change nothing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import make_settings
from factories import make_files, store_bytes
from pallet.artifacts.models import Artifact
from pallet.content.models import ContentArtifact
from pallet.content.service import create_content
from pallet.distributions.service import create_distribution, Target as Serving
from pallet.errors import NotFound, PalletError
from pallet.publications.service import publish
from pallet.repositories import service as repositories
from pallet.repositories.models import RepositoryVersion
from pallet.repositories.versions import create_version, latest_version
from pallet.runtime import Runtime
from pallet.tasks.worker import TaskContext
from pallet.transfer import service, signing, tasks
from pallet.transfer.export import Selection, header, write_archive
from pallet.transfer.chunks import StreamSink
from pallet.transfer.tarstream import BadArchive


@pytest.fixture
def source(tmp_path, database_url):
    settings = make_settings(tmp_path / "source", database_url,
                             allowed_export_dirs=[tmp_path / "exports"])
    (tmp_path / "exports").mkdir()
    runtime = Runtime.create(settings)
    yield runtime
    runtime.close()


@pytest.fixture
def destination(tmp_path, other_database_url):
    settings = make_settings(tmp_path / "destination", other_database_url,
                             allowed_import_dirs=[tmp_path / "exports"],
                             import_reserve_bytes=0)
    runtime = Runtime.create(settings)
    yield runtime
    runtime.close()


def run(fn, runtime, **kwargs):
    task = TaskContext(0)
    fn(runtime, task, **kwargs)
    return task.result


def repository(runtime, name, ids=(), remove=()):
    with runtime.db.write() as session:
        try:
            repo = repositories.get_repository(session, name)
        except PalletError:
            repo = repositories.create_repository(session, runtime.plugins, name=name,
                                                  type="file")
        if ids or remove:
            create_version(session, runtime.plugins, repo, add=ids, remove=remove)
        return repo.id


def digest(runtime, name):
    with runtime.db.read() as session:
        return latest_version(session, repositories.get_repository(session, name)).digest


def versions(runtime, name):
    with runtime.db.read() as session:
        repo = repositories.get_repository(session, name)
        return latest_version(session, repo).number


def exporter(runtime, tmp_path, names, **options):
    with runtime.db.write() as session:
        return service.create_exporter(session, runtime.settings, name="ex",
                                       path=str(tmp_path / "exports"), repositories=names,
                                       **options).id


def importer(runtime, **options):
    options.setdefault("create_repositories", True)
    with runtime.db.write() as session:
        return service.create_importer(session, name="im", **options).id


def toc_path(result) -> str:
    return result["toc"]


def test_full_round_trip_is_exact_and_says_so(source, destination, tmp_path):
    ids = make_files(source, 30, "a")
    shared = ids[:5]  # both repositories hold these: their artifacts travel once
    repository(source, "web", ids)
    repository(source, "tools", shared + make_files(source, 3, "t"))
    exporter_id = exporter(source, tmp_path, ["web", "tools"], chunk_size=1 << 20)
    result = run(tasks.export, source, exporter_id=exporter_id)
    assert result["artifacts"] == 33
    importer_id = importer(destination)

    plan = run(tasks.check, destination, importer_id=importer_id, path=toc_path(result))
    assert [(r["destination"], r["create_repository"], r["version"], r["units_added"])
            for r in plan["repositories"]] == [("web", True, 1, 30), ("tools", True, 1, 8)]
    assert plan["bytes_to_write"] > 0 and plan["dry_run"]
    with destination.db.read() as session:  # the check changed nothing
        assert session.scalar(select(func.count()).select_from(Artifact)) == 0

    done = run(tasks.import_archive, destination, importer_id=importer_id,
               path=toc_path(result))
    for name in ("web", "tools"):
        assert digest(destination, name) == digest(source, name)
    assert [r["target_digest"] for r in done["repositories"]] == \
        [digest(source, "web"), digest(source, "tools")]
    assert done["bytes_to_write"] == plan["bytes_to_write"]
    for sha in _shas(source):  # every byte arrived, verified
        assert destination.storage.hash_stored(sha) == sha

    again = run(tasks.import_archive, destination, importer_id=importer_id,
                path=toc_path(result))
    assert all(r["up_to_date"] and r["version"] is None for r in again["repositories"])
    assert again["bytes_to_write"] == 0 and versions(destination, "web") == 1


def _shas(runtime):
    with runtime.db.read() as session:
        return list(session.scalars(select(Artifact.sha256)))


def test_incremental_chain_ends_identical(source, destination, tmp_path):
    ids = make_files(source, 40, "a")
    repository(source, "web", ids)
    exporter_id = exporter(source, tmp_path, ["web"])
    importer_id = importer(destination)
    full = run(tasks.export, source, exporter_id=exporter_id)
    run(tasks.import_archive, destination, importer_id=importer_id, path=toc_path(full))

    for step in range(2):
        repository(source, "web", make_files(source, 4, f"new{step}"), remove=ids[step::10])
        delta = run(tasks.export, source, exporter_id=exporter_id, incremental=True)
        assert delta["incremental"] and delta["artifacts"] == 4  # only the new bytes travel
        plan = run(tasks.check, destination, importer_id=importer_id, path=toc_path(delta))
        assert plan["repositories"][0]["units_added"] == 4
        assert plan["repositories"][0]["units_removed"] == 4
        run(tasks.import_archive, destination, importer_id=importer_id, path=toc_path(delta))
        assert digest(destination, "web") == digest(source, "web")


def test_an_incremental_of_several_repositories_carries_each_new_artifact_once(
        source, destination, tmp_path):
    ids = make_files(source, 12, "a")
    repository(source, "web", ids[:8])
    repository(source, "tools", ids[4:])
    exporter_id = exporter(source, tmp_path, ["web", "tools"])
    importer_id = importer(destination)
    full = run(tasks.export, source, exporter_id=exporter_id)
    run(tasks.import_archive, destination, importer_id=importer_id, path=toc_path(full))
    shared, own = make_files(source, 2, "shared"), make_files(source, 1, "own")
    repository(source, "web", shared + own, remove=ids[:1])
    repository(source, "tools", shared + ids[:1])  # an artifact tools did not hold before
    delta = run(tasks.export, source, exporter_id=exporter_id, incremental=True)
    assert delta["artifacts"] == 4  # 2 shared, once; web's own; ids[0] new to tools
    run(tasks.import_archive, destination, importer_id=importer_id, path=toc_path(delta))
    for name in ("web", "tools"):
        assert digest(destination, name) == digest(source, name)


def test_incremental_onto_the_wrong_base_names_both_digests(source, destination, tmp_path):
    ids = make_files(source, 10, "a")
    repository(source, "web", ids)
    exporter_id = exporter(source, tmp_path, ["web"])
    importer_id = importer(destination)
    run(tasks.import_archive, destination, importer_id=importer_id,
        path=toc_path(run(tasks.export, source, exporter_id=exporter_id)))
    repository(destination, "web", remove=ids[:1])  # the destination drifted
    before = digest(destination, "web")
    repository(source, "web", remove=ids[5:6])
    delta = run(tasks.export, source, exporter_id=exporter_id, incremental=True)
    with pytest.raises(PalletError) as refused:
        run(tasks.import_archive, destination, importer_id=importer_id, path=toc_path(delta))
    assert refused.value.code == "wrong_base"
    assert before in refused.value.message and refused.value.details["base_digest"] in \
        refused.value.message
    assert digest(destination, "web") == before


def test_a_damaged_chunk_changes_nothing_and_a_rerun_reuses_what_was_stored(
        source, destination, tmp_path):
    blobs = [os.urandom(300_000) for _ in range(12)]
    units = []
    for i, data in enumerate(blobs):
        sha = store_bytes(source, data)
        with source.db.write() as session:
            units.append(create_content(session, source.plugins, type="file",
                                        fields={"relative_path": f"big/{i}", "sha256": sha}
                                        )[0].id)
    repository(source, "web", units)
    result = run(tasks.export, source, exporter_id=exporter(source, tmp_path, ["web"],
                                                            chunk_size=1 << 20))
    toc = json.loads(Path(result["toc"]).read_text())
    last = Path(result["toc"]).parent / toc["chunks"][-1]["name"]
    good = last.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    last.write_bytes(bytes(damaged))
    importer_id = importer(destination)
    with pytest.raises(PalletError, match="damaged|altered"):
        run(tasks.import_archive, destination, importer_id=importer_id, path=result["toc"])
    with destination.db.read() as session:
        with pytest.raises(PalletError):
            repositories.get_repository(session, "web")
    last.write_bytes(good)
    done = run(tasks.import_archive, destination, importer_id=importer_id, path=result["toc"])
    assert digest(destination, "web") == digest(source, "web")
    assert done["artifacts_present"] > 0  # stored by the failed attempt, not written again


def test_signatures(source, destination, tmp_path):
    repository(source, "web", make_files(source, 3))
    with source.db.write() as session:
        key = service.create_key(session, name="release")
        public = key.public_key
    exporter_id = exporter(source, tmp_path, ["web"])
    unsigned = run(tasks.export, source, exporter_id=exporter_id)
    with source.db.write() as session:
        service.update_exporter(session, source.settings,
                                service.get_exporter(session, "ex"), {"signing_key": "release"})
    signed = run(tasks.export, source, exporter_id=exporter_id)
    importer_id = importer(destination, trusted_keys=[public], require_signature=True)
    with pytest.raises(PalletError, match="not signed"):
        run(tasks.check, destination, importer_id=importer_id, path=unsigned["toc"])
    plan = run(tasks.import_archive, destination, importer_id=importer_id, path=signed["toc"])
    assert plan["signed_by"] == key.key_id

    toc = json.loads(Path(signed["toc"]).read_text())
    toc["summary"]["repositories"][0]["digest"] = "0" * 64
    Path(signed["toc"]).write_text(json.dumps(toc))
    with pytest.raises(PalletError, match="altered after signing"):
        run(tasks.check, destination, importer_id=importer_id, path=signed["toc"])


def test_mapping_onto_a_missing_repository_is_refused(source, destination, tmp_path):
    repository(source, "web", make_files(source, 2))
    result = run(tasks.export, source, exporter_id=exporter(source, tmp_path, ["web"]))
    importer_id = importer(destination, mapping={"web": "other"}, create_repositories=False)
    with pytest.raises(PalletError, match="'other'.*does not exist"):
        run(tasks.check, destination, importer_id=importer_id, path=result["toc"])


def test_on_demand_content_fails_the_export_up_front(source, tmp_path):
    ids = make_files(source, 2)
    with source.db.write() as session:
        session.execute(ContentArtifact.__table__.update()
                        .where(ContentArtifact.content_id == ids[0]).values(artifact_id=None))
    repository(source, "web", ids)
    exporter_id = exporter(source, tmp_path, ["web"])
    with pytest.raises(PalletError, match="could not be fetched") as refused:
        run(tasks.export, source, exporter_id=exporter_id)
    missing = refused.value.details["missing"]
    assert [(m["relative_path"], m["reason"]) for m in missing] == \
        [("f/0.txt", "no remote offers these bytes")]
    with pytest.raises(PalletError, match="never downloaded"):
        run(tasks.export, source, exporter_id=exporter_id, fetch=False)
    assert list((tmp_path / "exports").iterdir()) == []


def test_running_out_of_space_changes_nothing(source, destination, tmp_path):
    repository(source, "web", make_files(source, 5))
    result = run(tasks.export, source, exporter_id=exporter(source, tmp_path, ["web"]))
    destination.settings.import_reserve_bytes = 1 << 62
    importer_id = importer(destination)
    with pytest.raises(PalletError, match="reserve") as refused:
        run(tasks.import_archive, destination, importer_id=importer_id, path=result["toc"])
    assert refused.value.code == "out_of_space"
    with destination.db.read() as session:
        assert repositories.list_repositories(session)[0] == 0


def test_a_single_stream_archive_imports(source, destination, tmp_path):
    ids = make_files(source, 6)
    repository(source, "web", ids)
    target = tmp_path / "exports" / "web.tar"
    with source.db.snapshot() as session, open(target, "wb") as out:
        repo = repositories.get_repository(session, "web")
        chosen = [Selection(repo, latest_version(session, repo))]
        write_archive(session, source.storage, chosen, header(session, chosen, exporter="x"),
                      StreamSink(out))
    importer_id = importer(destination)
    run(tasks.import_archive, destination, importer_id=importer_id, path=str(target))
    assert digest(destination, "web") == digest(source, "web")


def test_publications_and_distributions_travel(source, destination, tmp_path):
    repository(source, "web", make_files(source, 3))
    with source.db.write() as session:
        repo = repositories.get_repository(session, "web")
        publish(session, source.plugins, source.storage, repo, latest_version(session, repo))
        create_distribution(session, name="web", base_path="pub/web",
                            target=Serving(repository_id=repo.id))
    result = run(tasks.export, source, exporter_id=exporter(source, tmp_path, ["web"]))
    run(tasks.import_archive, destination, importer_id=importer(destination),
        path=result["toc"])
    from pallet.distributions.service import get_distribution
    from pallet.publications.service import latest_publication
    with destination.db.read() as session:
        repo = repositories.get_repository(session, "web")
        assert get_distribution(session, "web").repository_id == repo.id
        publication = latest_publication(session, repo.id)
        assert publication.version_id == latest_version(session, repo).id
        assert [f.relative_path for f in publication.metadata_files] == ["PULP_MANIFEST"]


def test_mapping_onto_a_repository_of_another_type_is_refused(source, destination, tmp_path):
    from pallet.plugin import Plugin, RepositoryType
    destination.plugins.add(Plugin(name="notes", repository_types=(
        RepositoryType(name="notes", content_types=("file",)),)))
    with destination.db.write() as session:
        repositories.create_repository(session, destination.plugins, name="web", type="notes")
    repository(source, "web", make_files(source, 2))
    result = run(tasks.export, source, exporter_id=exporter(source, tmp_path, ["web"]))
    with pytest.raises(PalletError, match="is a notes repository") as refused:
        run(tasks.check, destination, importer_id=importer(destination), path=result["toc"])
    assert refused.value.code == "wrong_type"


def _publish(runtime, name):
    with runtime.db.write() as session:
        repo = repositories.get_repository(session, name)
        return publish(session, runtime.plugins, runtime.storage, repo,
                       latest_version(session, repo))[0].id


def test_a_plain_tree_syncs_into_another_pallet_full_then_incremental(source, destination,
                                                                      tmp_path):
    from pallet.remotes.service import create_remote
    from pallet.remotes.sync import sync_repository

    ids = make_files(source, 12, "docs")
    repository(source, "web", ids)
    tree = tmp_path / "exports" / "tree"
    result = run(tasks.export_tree, source, publication_id=_publish(source, "web"),
                 path=str(tree), method="copy")
    assert result["files"] == 12 and (tree / "PULP_MANIFEST").is_file()
    assert (tree / "docs" / "0.txt").read_bytes() == b"docs-0"

    repository(destination, "mirror")
    with destination.db.write() as session:
        remote_id = create_remote(session, destination.plugins, destination.settings,
                                  name="tree", url=(tree / "PULP_MANIFEST").as_uri(),
                                  mirror=True).id
        mirror_id = repositories.get_repository(session, "mirror").id
    run(sync_repository, destination, repository_id=mirror_id, remote_id=remote_id)
    assert digest(destination, "mirror") == digest(source, "web")

    start = versions(source, "web")
    repository(source, "web", make_files(source, 2, "more"), remove=ids[:3])
    delta = run(tasks.export_tree, source, publication_id=_publish(source, "web"),
                path=str(tree), method="hardlink", start_version=start)
    assert (delta["files"], delta["removed"]) == (2, 3)
    assert not (tree / "docs" / "0.txt").exists()
    assert os.stat(tree / "more" / "0.txt").st_nlink == 2  # linked to the store's copy
    run(sync_repository, destination, repository_id=mirror_id, remote_id=remote_id)
    assert digest(destination, "mirror") == digest(source, "web")


def test_a_plain_tree_never_writes_through_a_link_out_of_it(source, tmp_path):
    repository(source, "web", make_files(source, 2, "docs"))
    tree = tmp_path / "exports" / "tree"
    tree.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (tree / "docs").symlink_to(outside)
    with pytest.raises(PalletError, match="outside"):
        run(tasks.export_tree, source, publication_id=_publish(source, "web"),
            path=str(tree), method="symlink")
    assert list(outside.iterdir()) == []


def _stream_archive(runtime, tmp_path, name="web.tar", mutate=None):
    """A single-stream archive of `web` written by hand; `mutate(document)` alters its header."""
    target = tmp_path / "exports" / name
    with runtime.db.snapshot() as session, open(target, "wb") as out:
        repo = repositories.get_repository(session, "web")
        chosen = [Selection(repo, latest_version(session, repo))]
        document = header(session, chosen, exporter="x")
        if mutate:
            mutate(document)
        write_archive(session, runtime.storage, chosen, document, StreamSink(out))
    return str(target)


def test_an_unsigned_stream_stores_nothing_where_a_signature_is_required(
        source, destination, tmp_path):
    repository(source, "web", make_files(source, 3))
    path = _stream_archive(source, tmp_path)
    _, public = signing.generate()
    importer_id = importer(destination, trusted_keys=[public], require_signature=True)
    with pytest.raises(PalletError, match="not signed"):
        run(tasks.import_archive, destination, importer_id=importer_id, path=path)
    with destination.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Artifact)) == 0
    assert list(destination.storage.root.glob("??/*")) == []  # no artifact stored


def test_a_check_refuses_publish_options_the_import_would_refuse(source, destination,
                                                                 tmp_path):
    repository(source, "web", make_files(source, 2))
    path = _stream_archive(source, tmp_path, mutate=lambda d: d["repositories"][0].update(
        publications=[{"manifest": "../evil"}]))
    with pytest.raises(PalletError, match="publish options"):
        run(tasks.check, destination, importer_id=importer(destination), path=path)


def test_an_archive_cannot_take_over_a_distribution_serving_something_else(
        source, destination, tmp_path):
    repository(source, "web", make_files(source, 2))
    repository(destination, "other", make_files(destination, 1))
    with destination.db.write() as session:
        other = repositories.get_repository(session, "other")
        create_distribution(session, name="prod", base_path="prod",
                            target=Serving(repository_id=other.id))
    path = _stream_archive(source, tmp_path, mutate=lambda d: d["repositories"][0].update(
        distributions=[{"name": "prod", "base_path": "prod"}]))
    with pytest.raises(PalletError, match="serves another repository"):
        run(tasks.check, destination, importer_id=importer(destination), path=path)


def test_a_present_artifact_with_another_size_in_the_archive_is_refused(
        source, destination, tmp_path):
    data = b"verified bytes" * 100
    sha = store_bytes(source, data)
    with source.db.write() as session:
        unit = create_content(session, source.plugins, type="file",
                              fields={"relative_path": "a", "sha256": sha})[0].id
    repository(source, "web", [unit])
    path = _stream_archive(source, tmp_path)
    with destination.storage.writer() as writer:  # stored here already, without a row
        writer.write(data)
        writer.commit(sha)
    raw = bytearray(Path(path).read_bytes())
    # Shrink the artifact member's recorded size: its header is the second 512-byte block
    # after the header member.
    from pallet.transfer.tarstream import BLOCK, header as tar_header
    start = raw.index(f"artifacts/{sha}".encode())
    raw[start:start + BLOCK] = tar_header(f"artifacts/{sha}", 1)
    Path(path).write_bytes(bytes(raw))
    with pytest.raises(PalletError, match="have 1400"):
        run(tasks.import_archive, destination, importer_id=importer(destination), path=path)
    with destination.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Artifact)) == 0


def test_rows_recorded_concurrently_are_skipped_not_a_failure(source):
    """Two transactions (an import and a sync, say) record the same artifact and unit: the
    second waits for the first and then finds the rows, instead of failing on them."""
    import threading
    from pallet.content.bulk import NewUnit, record_artifacts, record_units
    from pallet.content.identity import identity_digest

    sha = store_bytes(source, b"shared bytes")
    with source.db.write() as session:  # store_bytes recorded it: start from no row
        session.execute(Artifact.__table__.delete())
    fields = {"relative_path": "shared", "sha256": sha}
    unit = NewUnit("file", identity_digest("file", fields), fields, (("shared", sha, 12),))
    seen = {}

    def second():
        with source.db.write() as session:
            artifacts = record_artifacts(session, {sha: 12})
            seen["second"] = (artifacts[sha][0],
                              record_units(session, source.plugins, [unit], artifacts))

    with source.db.write() as session:
        artifacts = record_artifacts(session, {sha: 12})
        ids = record_units(session, source.plugins, [unit], artifacts)
        other = threading.Thread(target=second)
        other.start()
        other.join(0.5)  # it waits for this transaction (PostgreSQL) or its lock (SQLite)
    other.join(30)
    assert seen["second"] == (artifacts[sha][0], ids)


def test_an_import_limited_to_its_sources_refuses_an_archive_bringing_more(
        source, destination, tmp_path):
    """A replication asks for some repositories; an upstream that sends another one (which
    could replace any repository here) is refused before anything changes."""
    from pallet.transfer.imports import ArchiveImport, ImportRules
    from pallet.transfer.reader import open_stream

    repository(source, "web", make_files(source, 3, "w"))
    repository(destination, "victim", make_files(destination, 2, "v"))
    before = digest(destination, "victim")

    def rename(document):
        document["repositories"][0]["name"] = "victim"
    path = _stream_archive(source, tmp_path, mutate=rename)
    for rules, refused in ((ImportRules(sources=frozenset({"web"})), True),
                           (ImportRules(sources=frozenset({"victim"})), False)):
        with open(path, "rb") as stream:
            work = ArchiveImport(destination, rules, open_stream(stream), source="test",
                                 dry_run=False, progress=lambda *a: None)
            if refused:
                with pytest.raises(BadArchive, match="not the ones asked for"):
                    work.run()
                assert digest(destination, "victim") == before
            else:  # the same archive, when it is what was asked for, applies
                assert work.run()["repositories"][0]["destination"] == "victim"
    assert digest(destination, "victim") == digest(source, "web")


def test_a_change_starts_from_the_version_holding_the_digest(source):
    from pallet.replication.offer import prepare_change

    ids = make_files(source, 4, "s")
    repository(source, "web", ids[:2])
    repository(source, "web", ids[2:3])
    repository(source, "web", ids[3:])
    with source.db.read() as session:
        repo = repositories.get_repository(session, "web")
        first = session.scalar(select(RepositoryVersion).where(
            RepositoryVersion.repository_id == repo.id, RepositoryVersion.number == 1))
        wanted = [{"name": "web", "base_version": 99, "base_digest": first.digest}]
        prepared = prepare_change(session, wanted)
        entry = prepared.document["repositories"][0]
        assert (entry["base_version"], entry["added"], entry["version"]) == (1, 2, 3)
        unknown = [{"name": "web", "base_version": 1, "base_digest": "0" * 64}]
        entry = prepare_change(session, unknown).document["repositories"][0]
        assert "base_version" not in entry and entry["added"] == 4  # sent whole
        with pytest.raises(NotFound):
            prepare_change(session, [{"name": "nope"}])


@pytest.mark.parametrize("options", [{"manifest": "../evil"}, {"manifest": 5},
                                     {"unknown": 1}])
def test_refused_publish_options_are_named_in_pallet_words(source, destination, tmp_path,
                                                           options):
    repository(source, "web", make_files(source, 2))
    path = _stream_archive(source, tmp_path, mutate=lambda d: d["repositories"][0].update(
        publications=[options]))
    with pytest.raises(BadArchive, match="publish options") as refused:
        run(tasks.check, destination, importer_id=importer(destination), path=path)
    text = refused.value.message + json.dumps(refused.value.details)
    assert "pydantic" not in text and "http" not in text and "input_value" not in text


def test_a_check_refuses_a_header_digest_its_units_do_not_make(source, destination,
                                                              tmp_path):
    repository(source, "web", make_files(source, 3))
    path = _stream_archive(source, tmp_path, mutate=lambda d: d["repositories"][0].update(
        digest="0" * 64))
    importer_id = importer(destination)
    with pytest.raises(PalletError, match="content digest") as refused:
        run(tasks.check, destination, importer_id=importer_id, path=path)
    assert refused.value.code == "digest_mismatch"
    with pytest.raises(PalletError) as imported:
        run(tasks.import_archive, destination, importer_id=importer_id, path=path)
    assert imported.value.code == "digest_mismatch"


def test_a_check_of_an_incremental_computes_the_digest_from_the_destination(
        source, destination, tmp_path):
    ids = make_files(source, 4)
    repository(source, "web", ids[:3])
    exporter_id = exporter(source, tmp_path, ["web"])
    full = run(tasks.export, source, exporter_id=exporter_id)
    repository(source, "web", ids[3:], remove=ids[:1])
    incremental = run(tasks.export, source, exporter_id=exporter_id, incremental=True)
    importer_id = importer(destination)
    run(tasks.import_archive, destination, importer_id=importer_id, path=full["toc"])
    plan = run(tasks.check, destination, importer_id=importer_id, path=incremental["toc"])
    assert plan["repositories"][0]["target_digest"] == digest(source, "web")


def test_a_check_refuses_repository_publish_options_the_import_would_refuse(
        source, destination, tmp_path):
    repository(source, "web", make_files(source, 2))
    path = _stream_archive(source, tmp_path, mutate=lambda d: d["repositories"][0].update(
        autopublish=False, publish_options={"manifest": "../evil"}))
    with pytest.raises(BadArchive, match="publish options"):
        run(tasks.check, destination, importer_id=importer(destination), path=path)


def test_damaged_bytes_of_an_artifact_held_here_already_are_refused(source, destination,
                                                                     tmp_path):
    data = b"the genuine bytes " * 100
    sha = store_bytes(source, data)
    store_bytes(destination, data)  # the destination holds these bytes already
    with source.db.write() as session:
        unit = create_content(session, source.plugins, type="file",
                              fields={"relative_path": "a", "sha256": sha})[0].id
    repository(source, "web", [unit])
    source.storage.path(sha).write_bytes(b"X" * len(data))  # rotted in the source's store
    path = _stream_archive(source, tmp_path)  # a consistent archive of damaged bytes
    importer_id = importer(destination)
    for task in (tasks.check, tasks.import_archive):
        with pytest.raises(BadArchive, match="damaged") as refused:
            run(task, destination, importer_id=importer_id, path=path)
        assert refused.value.code == "digest_mismatch"
    with destination.db.read() as session:
        assert repositories.list_repositories(session)[0] == 0


def unrecorded(runtime) -> set[str]:
    """Files in the artifact store that no artifact row records (cleanup never sees them)."""
    stored = {path.name for path in runtime.storage.root.glob("??/*")}
    with runtime.db.read() as session:
        return stored - set(session.scalars(select(Artifact.sha256)))


def temporaries(runtime) -> list[str]:
    """What is left under the store's .tmp, besides this process's own (empty) folder."""
    own = runtime.storage.tmp
    left = [str(p.relative_to(own.parent)) for p in own.parent.rglob("*")
            if p not in (own, Path(f"{own}.lock"), runtime.storage.journals)]
    return sorted(left + [p.name for p in own.iterdir()])


def _big_units(runtime, count, size=300_000):
    units = []
    for i in range(count):
        sha = store_bytes(runtime, os.urandom(size))
        with runtime.db.write() as session:
            units.append(create_content(session, runtime.plugins, type="file",
                                        fields={"relative_path": f"big/{i}", "sha256": sha}
                                        )[0].id)
    return units


def test_a_signed_chunk_with_replaced_bytes_stores_nothing_of_them(source, destination,
                                                                  tmp_path):
    """The replacement is named by its own sha256, so it verifies as an artifact; only the
    chunk's checksum, which the signature covers, tells it is not the exporter's."""
    from pallet.transfer.tarstream import BLOCK, header as tar_header
    data = b"the exporter's bytes " * 50
    sha = store_bytes(source, data)
    with source.db.write() as session:
        unit = create_content(session, source.plugins, type="file",
                              fields={"relative_path": "a", "sha256": sha})[0].id
        key = service.create_key(session, name="release")
        public = key.public_key
    repository(source, "web", [unit])
    result = run(tasks.export, source, exporter_id=exporter(source, tmp_path, ["web"],
                                                            signing_key="release"))
    toc = json.loads(Path(result["toc"]).read_text())
    chunk = Path(result["toc"]).parent / toc["chunks"][0]["name"]
    raw = bytearray(chunk.read_bytes())
    evil = b"an attacker's bytes!" * 52 + b"x" * (len(data) - 1040)
    evil_sha = hashlib.sha256(evil).hexdigest()
    start = raw.index(f"artifacts/{sha}".encode())
    raw[start:start + BLOCK] = tar_header(f"artifacts/{evil_sha}", len(evil))
    raw[start + BLOCK:start + BLOCK + len(evil)] = evil
    chunk.write_bytes(bytes(raw))
    importer_id = importer(destination, trusted_keys=[public], require_signature=True)
    with pytest.raises(PalletError) as refused:
        run(tasks.import_archive, destination, importer_id=importer_id, path=result["toc"])
    assert refused.value.code == "chunk_checksum"
    assert not destination.storage.exists(evil_sha)
    assert list(destination.storage.root.glob("??/*")) == []
    assert temporaries(destination) == []


def test_a_truncated_stream_leaves_only_recorded_files(source, destination, tmp_path):
    repository(source, "web", _big_units(source, 8))
    path = Path(_stream_archive(source, tmp_path))
    path.write_bytes(path.read_bytes()[:path.stat().st_size * 2 // 3])
    with pytest.raises(PalletError) as refused:
        run(tasks.import_archive, destination, importer_id=importer(destination),
            path=str(path))
    assert refused.value.code == "truncated"
    assert unrecorded(destination) == set() and temporaries(destination) == []
    assert len(list(destination.storage.root.glob("??/*"))) > 0  # kept for a rerun


def test_running_out_of_space_midway_leaves_no_file_behind(source, destination, tmp_path):
    import shutil
    repository(source, "web", _big_units(source, 12))
    path = _stream_archive(source, tmp_path)
    # Room for about three of the twelve artifacts before the reserve is reached.
    free = shutil.disk_usage(destination.storage.root).free
    destination.settings.import_reserve_bytes = free - 1_000_000
    with pytest.raises(PalletError) as refused:
        run(tasks.import_archive, destination, importer_id=importer(destination), path=path)
    assert refused.value.code == "out_of_space"
    assert list(destination.storage.root.glob("??/*")) == []  # the space is given back
    assert temporaries(destination) == []


FIFO_WORKER = ("import pallet.transfer.tasks as tasks; tasks.regular_file = lambda path: path; "
               "from pallet.cli.main import main; main()")


@pytest.mark.slow
def test_an_import_killed_midway_leaves_nothing_the_next_start_does_not_clear(
        source, destination, tmp_path):
    """A worker process reads a stream from a FIFO and is killed with SIGKILL while it is
    half read: what it stored is recorded or removed once a process opens the store again."""
    import signal
    import threading
    from pallet.artifacts.storage import LocalStorage
    from pallet.tasks.service import enqueue
    from tests.processes import pallet_env, stop, wait_until
    repository(source, "web", _big_units(source, 8))
    archive = Path(_stream_archive(source, tmp_path)).read_bytes()
    fifo = tmp_path / "exports" / "slow.tar"
    os.mkfifo(fifo)
    importer_id = importer(destination)
    with destination.db.write() as session:
        enqueue(session, tasks.import_archive, exclusive=["importer:1"],
                importer_id=importer_id, path=str(fifo))

    def feed() -> None:  # a third of the archive, then silence until the reader dies
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as out:
            out.write(archive[:len(archive) // 3])
            out.flush()
            killed.wait(30)

    killed = threading.Event()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    env = pallet_env(destination.settings, PALLET_IMPORT_RESERVE_BYTES="0",
                     PALLET_ALLOWED_IMPORT_DIRS=json.dumps([str(tmp_path / "exports")]))
    with open(tmp_path / "worker.log", "ab") as log:
        # The API refuses a FIFO as an archive (it would block a thread); this worker takes
        # one, so that the test can hold its import half read.
        worker = subprocess.Popen([sys.executable, "-c", FIFO_WORKER, "worker"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        root, tmp = destination.storage.root, destination.storage.root / ".tmp"
        wait_until(lambda: any(root.glob("??/*")) or any(tmp.glob("*/staged-*/*/*")), 30,
                   "the import never stored anything")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        killed.set()
        stop(worker)
    feeder.join(10)
    again = LocalStorage(destination.storage.root)  # the next start
    try:
        assert unrecorded(destination) == set()
        assert sorted(os.listdir(tmp)) == sorted(["journals", again.tmp.name,
                                                  f"{again.tmp.name}.lock",
                                                  destination.storage.tmp.name,
                                                  f"{destination.storage.tmp.name}.lock"])
    finally:
        again.close()


def test_what_a_dead_import_placed_unrecorded_is_recorded_or_removed(destination):
    from pallet.transfer.staged import recover
    good, bad = b"placed, not recorded", b"cut short by a crash"
    good_sha, bad_sha = (hashlib.sha256(d).hexdigest() for d in (good, bad))
    storage = destination.storage
    for sha, data in ((good_sha, good), (bad_sha, b"cut")):  # as a journal's batch was left
        storage.path(sha).parent.mkdir(exist_ok=True)
        storage.path(sha).write_bytes(data)
    storage.abandon(storage.journal([good_sha, bad_sha, "0" * 64]))
    assert unrecorded(destination) == {good_sha, bad_sha}
    assert recover(destination.db, storage) == 1
    assert unrecorded(destination) == set() and not storage.exists(bad_sha)
    with destination.db.read() as session:
        assert session.scalar(select(Artifact.size).where(Artifact.sha256 == good_sha)) \
            == len(good)
    assert list(storage.journals.iterdir()) == []
