"""References between units (an advisory names packages): stored when a unit is recorded,
checked when a version is made (reported on the version, or followed by the removal), and
indexed type fields (a package's name and arch) answered by an index, not a JSON scan."""

import pytest
from sqlalchemy import select, text

from pallet.content.bulk import record_units
from pallet.content.fields import fields_match, index_name
from pallet.content.models import Content
from pallet.content.references import stored_references
from pallet.errors import Invalid
from pallet.plugins.rpm import advisory, package
from pallet.repositories import service, versions
from pallet.repositories.models import RepositoryContent
from tests.factories import rpm_advisory, rpm_package


@pytest.fixture
def units(runtime):
    made = {"foo": rpm_package("foo"), "bar": rpm_package("bar"),
            "foo-rebuilt": rpm_package("foo", build="again"),
            "A": rpm_advisory("RHSA-1", "foo", "baz"), "B": rpm_advisory("RHSA-2", "bar")}
    with runtime.db.write() as session:
        service.create_repository(session, runtime.plugins, name="el", type="rpm")
        ids = record_units(session, runtime.plugins, made.values(), {})
    return {label: ids[unit.digest] for label, unit in made.items()}


def change(runtime, **changes):
    with runtime.db.write() as session:
        repository = service.get_repository(session, "el")
        version = versions.create_version(session, runtime.plugins, repository, **changes)
        return version and (version.number, version.broken_references)


def members(runtime):
    with runtime.db.read() as session:
        return set(session.scalars(select(RepositoryContent.content_id).where(
            RepositoryContent.version_removed.is_(None))))


def named(report):
    return sorted((e["unit"], e["names"]["name"]) for e in report["examples"])


def test_references_are_stored_with_the_unit(runtime, units):
    with runtime.db.read() as session:
        refs = stored_references(session, units["A"])
        assert refs == [{"type": package.TYPE, "exact": True,
                         "fields": {"name": n, "epoch": "0", "version": "1.0", "release": "1",
                                    "arch": "x86_64"}} for n in ("foo", "baz")]
        assert stored_references(session, units["foo"]) == []


def test_a_version_records_the_references_its_additions_leave_unresolved(runtime, units):
    number, report = change(runtime, add=[units["foo"], units["A"], units["bar"], units["B"]])
    assert report["count"] == 1 and named(report) == [(units["A"], "baz")]
    assert report["examples"][0]["type"] == advisory.TYPE


def test_a_removal_that_breaks_a_reference_is_reported(runtime, units):
    change(runtime, add=[units["foo"], units["bar"], units["B"]])
    assert change(runtime, add=[units["bar"]], remove=[units["foo"]])[1] is None  # none names foo
    change(runtime, add=[units["foo"], units["B"]])
    number, report = change(runtime, remove=[units["bar"]])
    assert named(report) == [(units["B"], "bar")]
    assert members(runtime) == {units["foo"], units["B"]}  # reported, not followed


def test_a_unit_replaced_under_the_same_key_keeps_its_references_whole(runtime, units):
    change(runtime, add=[units["foo"], units["bar"], units["B"]])
    number, report = change(runtime, add=[units["foo-rebuilt"]])
    assert report is None
    assert members(runtime) == {units["foo-rebuilt"], units["bar"], units["B"]}


def test_following_removes_the_units_whose_references_break(runtime, units):
    change(runtime, add=[units["foo"], units["bar"], units["B"]])
    number, report = change(runtime, remove=[units["bar"]], references="follow")
    assert members(runtime) == {units["foo"]}
    assert report is None
    with runtime.db.read() as session:
        version = versions.get_version(session, service.get_repository(session, "el"), number)
        assert version.counts[advisory.TYPE]["removed"] == 1
        assert version.digest == versions.recompute_digest(
            session, service.get_repository(session, "el"), number)


def test_following_does_not_apply_to_replacing_everything(runtime, units):
    with pytest.raises(Invalid, match="following references"):
        change(runtime, add=[units["foo"]], remove_all=True, references="follow")
    assert change(runtime, add=[units["foo"], units["A"]], remove_all=True)[1]["count"] == 1


def test_packages_by_name_and_arch_are_an_index_look_up(runtime, units):
    with runtime.db.read() as session:
        condition = fields_match(package.TYPE, {"name": "foo", "arch": "x86_64"})
        found = set(session.scalars(select(Content.id).where(condition)))
        assert found == {units["foo"], units["foo-rebuilt"]}
        query = select(Content.id).where(fields_match(package.TYPE, {"name": "foo"}))
        sql = str(query.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
        if session.get_bind().dialect.name == "sqlite":
            plan = " ".join(str(row) for row in session.execute(text("EXPLAIN QUERY PLAN " + sql)))
        else:
            session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(row[0] for row in session.execute(text("EXPLAIN " + sql)))
        assert index_name(package.TYPE, ("name", "arch")) in plan, plan


def test_look_ups_by_different_fields_are_different_statements(runtime, units):
    """The compiled-statement cache keys the field name: by name, then by arch alone."""
    with runtime.db.read() as session:
        by_name = set(session.scalars(select(Content.id).where(
            fields_match(package.TYPE, {"name": "x86_64"}))))
        by_arch = set(session.scalars(select(Content.id).where(
            fields_match(package.TYPE, {"arch": "x86_64"}))))
    assert by_name == set()
    assert by_arch == {units["foo"], units["foo-rebuilt"], units["bar"]}
