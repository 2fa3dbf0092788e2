"""Copying units between repositories: by id, by field values (a package name, a NEVRA, an
advisory id), with the units they reference, as one new version of the destination."""

import pytest

from pallet.content.bulk import record_units
from pallet.repositories import service, versions
from tests.conftest import wait_for_task
from tests.factories import rpm_advisory, rpm_package

API = "/api/v1"


@pytest.fixture
def units(runtime):
    made = {"foo": rpm_package("foo"), "foo2": rpm_package("foo", version="2.0"),
            "bar": rpm_package("bar"), "A": rpm_advisory("RHSA-1", "foo", "baz"),
            "B": rpm_advisory("RHSA-2", "bar")}
    with runtime.db.write() as session:
        source = service.create_repository(session, runtime.plugins, name="mirror", type="rpm")
        service.create_repository(session, runtime.plugins, name="frozen", type="rpm")
        ids = {label: unit for label, unit in
               ((label, record_units(session, runtime.plugins, [unit], {})[unit.digest])
                for label, unit in made.items())}
        versions.create_version(session, runtime.plugins, source, add=ids.values())
    return ids


def copy(client, **body):
    answer = client.post(f"{API}/repositories/frozen/copy", json={"source": "mirror", **body})
    assert answer.status_code == 202, answer.text
    return wait_for_task(client, answer.json()["href"])


def frozen(runtime):
    with runtime.db.read() as session:
        repository = service.get_repository(session, "frozen")
        number = versions.latest_version(session, repository).number
        return set(session.scalars(versions.content_ids_query(repository, number)))


def test_packages_are_copied_by_name(client, workers, runtime, units):
    task = copy(client, match=[{"type": "rpm.package", "fields": {"name": "foo"}}])
    assert task["state"] == "completed", task
    assert frozen(runtime) == {units["foo"], units["foo2"]}
    assert task["result"]["chosen"] == 2 and task["result"]["version"] == 1


def test_a_package_is_copied_by_nevra(client, workers, runtime, units):
    nevra = {"name": "foo", "epoch": "0", "version": "2.0", "release": "1", "arch": "x86_64"}
    assert copy(client, match=[{"type": "rpm.package", "fields": nevra}])["state"] == "completed"
    assert frozen(runtime) == {units["foo2"]}


def test_an_advisory_brings_the_packages_it_names(client, workers, runtime, units):
    task = copy(client, match=[{"type": "rpm.advisory", "fields": {"id": "RHSA-1"}}])
    assert task["state"] == "completed", task
    assert frozen(runtime) == {units["A"], units["foo"]}
    assert task["result"]["referenced"] == 1
    # it also names baz, which the mirror does not hold: the new version says so
    assert task["result"]["broken_references"]["count"] == 1
    version = client.get(f"{API}/repositories/frozen/versions/1").json()
    assert version["broken_references"]["examples"][0]["names"]["name"] == "baz"


def test_without_references_only_the_chosen_units_are_copied(client, workers, runtime,
                                                            units):
    copy(client, content=[units["B"]], references=False)
    assert frozen(runtime) == {units["B"]}


def test_a_match_that_finds_nothing_fails_the_copy_and_changes_nothing(client, workers,
                                                                     runtime, units):
    task = copy(client, match=[{"type": "rpm.package", "fields": {"name": "nope"}}])
    assert task["state"] == "failed"
    assert "holds no rpm.package with name=nope" in task["error"]["message"]
    assert frozen(runtime) == set()


@pytest.mark.parametrize("body, message", [
    ({"source": "frozen", "content": [1]}, "one repository into another"),
    ({"source": "mirror"}, "name the units to copy"),
    ({"source": "ghost", "content": [1]}, "no repository named 'ghost'"),
    ({"source": "mirror", "match": [{"type": "rpm.package", "fields": {}}]}, "fields"),
    ({"source": "mirror", "match": [{"type": "rpm.package", "fields": {"na'me": "x"}}]},
     "fields"),
    ({"source": "mirror", "match": [{"type": "rpm.package", "fields": {"name": "x" * 2000}}]},
     "fields"),
    ({"source": "mirror", "match": [{"type": "file", "fields": {"name": "x"}}]},
     "cannot match units of type 'file'"),
])
def test_a_copy_that_cannot_be_is_refused_before_it_runs(client, units, body, message):
    answer = client.post(f"{API}/repositories/frozen/copy", json=body)
    assert answer.status_code in (400, 404, 422), answer.text
    assert message in answer.text


def test_a_copy_between_types_is_refused(client, runtime, units):
    with runtime.db.write() as session:
        service.create_repository(session, runtime.plugins, name="files", type="file")
    answer = client.post(f"{API}/repositories/files/copy",
                         json={"source": "mirror", "content": [units["foo"]]})
    assert answer.status_code == 400 and "rpm repository" in answer.text


def test_a_type_without_dependencies_says_so(client, runtime):
    with runtime.db.write() as session:
        service.create_repository(session, runtime.plugins, name="a", type="file")
        service.create_repository(session, runtime.plugins, name="b", type="file")
    answer = client.post(f"{API}/repositories/b/copy", json={
        "source": "a", "match": [{"type": "file", "fields": {"relative_path": "x"}}],
        "dependencies": True})
    assert answer.status_code == 400
    assert "file repositories have no dependencies" in answer.text


def test_a_copy_with_dependencies_brings_what_the_packages_need(client, workers, runtime):
    need = [("libbar.so.1()(64bit)", None, None, None, None, False)]
    give = [("libbar.so.1()(64bit)", None, None, None, None, False)]
    made = {"app": rpm_package("app", requires=need + [("missing-thing", None, None, None,
                                                         None, False)]),
            "lib": rpm_package("libbar", provides=give), "other": rpm_package("other")}
    with runtime.db.write() as session:
        source = service.create_repository(session, runtime.plugins, name="full", type="rpm")
        service.create_repository(session, runtime.plugins, name="view", type="rpm")
        ids = {label: record_units(session, runtime.plugins, [unit], {})[unit.digest]
               for label, unit in made.items()}
        versions.create_version(session, runtime.plugins, source, add=ids.values())
    answer = client.post(f"{API}/repositories/view/copy", json={
        "source": "full", "match": [{"type": "rpm.package", "fields": {"name": "app"}}],
        "dependencies": True})
    task = wait_for_task(client, answer.json()["href"])
    assert task["state"] == "completed", task
    assert task["result"]["dependencies"] == 1
    assert task["result"]["unresolved"] == [
        "app-1.0-1.x86_64 requires missing-thing, which nothing provides"]
    with runtime.db.read() as session:
        view = service.get_repository(session, "view")
        held = set(session.scalars(versions.content_ids_query(view, 1)))
    assert held == {ids["app"], ids["lib"]}


def test_a_group_brings_every_package_of_the_names_it_lists(client, workers, runtime, units):
    from pallet.plugins.rpm import comps
    from tests.factories import new_unit

    fields = comps.Group(id="tools", packages=[{"name": "foo", "type": "mandatory"},
                                               {"name": "nowhere", "type": "optional"}]
                         ).model_dump(mode="json")
    group = new_unit(comps.GROUP, tuple(comps.Group.model_fields), fields, ())
    with runtime.db.write() as session:
        group_id = record_units(session, runtime.plugins, [group], {})[group.digest]
        versions.create_version(session, runtime.plugins,
                                service.get_repository(session, "mirror"), add=[group_id])
    task = copy(client, match=[{"type": "rpm.group", "fields": {"id": "tools"}}])
    assert task["state"] == "completed", task
    assert frozen(runtime) == {group_id, units["foo"], units["foo2"]}
    assert "broken_references" not in task["result"]  # names are followed, never checked


def test_a_units_references_are_queryable(client, units):
    listed = client.get(f"{API}/content/{units['A']}/references")
    assert listed.status_code == 200, listed.text
    assert [(r["fields"]["name"], r["exact"]) for r in listed.json()] == [("foo", True),
                                                                         ("baz", True)]
    assert client.get(f"{API}/content/{units['foo']}/references").json() == []
    assert client.get(f"{API}/content/999999/references").status_code == 404
