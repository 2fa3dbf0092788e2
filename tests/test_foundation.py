"""Pins of the foundation: the plugin surface, the schema, identities and settings."""

import pytest

import pallet.plugin
from pallet.content.identity import identity_digest
from pallet.db import Database
from pallet.plugins import load_plugins
from pallet.plugins.file import plugin as file_plugin


def test_the_plugin_surface_is_pinned():
    assert sorted(pallet.plugin.__all__) == [
        "API_VERSION", "COMMANDS_ENTRY_POINT_GROUP", "Checksum", "Closure", "ContentType",
        "Dependencies", "ENTRY_POINT_GROUP", "GeneratedFile", "Invalid", "MetadataOutput",
        "Plugin", "Publish", "PublishOptions", "PublishedFile", "PublishedUnit",
        "PublishedUnits", "ReadRemote", "Reference", "RemoteFile", "RemoteReader",
        "RemoteUnit", "RepositoryType", "ServedRepository", "Signer", "SyncOptions",
        "UnitModel", "validate_relative_path"]
    assert pallet.plugin.ENTRY_POINT_GROUP == "pallet.plugins.v2"
    assert pallet.plugin.API_VERSION == 2


def test_file_registers_through_its_entry_point_like_any_plugin():
    registry = load_plugins()
    assert registry.plugins["file"] is file_plugin
    assert registry.repository_type("file").content_types == ("file",)


def test_identity_is_canonical_and_stable():
    key = {"relative_path": "a/b", "sha256": "0" * 64}
    same = {"sha256": "0" * 64, "relative_path": "a/b"}
    assert identity_digest("file", key) == identity_digest("file", same)
    assert identity_digest("file", key) != identity_digest("other", key)
    # Pinned: the identity must never change between releases or servers.
    assert identity_digest("file", key) == \
        "1a191ac771135fbbaa9deba31849eec891f9dcf26aa45b97ee545729fbbb6c14"


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migrations_create_exactly_the_models(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from pallet.db.base import Base
    import pallet.db.models  # noqa: F401

    from pallet.content.fields import INDEX_PREFIX

    def modelled(obj, name, kind, reflected, compare_to):
        # indexes on type fields are made from the plugins at upgrade (content/fields.py)
        return not (kind == "index" and name and name.startswith(INDEX_PREFIX))

    db = Database(database_url)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": modelled})
        differences = compare_metadata(context, Base.metadata)
    db.dispose()
    assert differences == []


def test_ids_are_never_handed_out_twice(runtime):
    from pallet.tasks.models import Task

    with runtime.db.write() as session:
        first = Task(name="x", args={}, progress=[], created_resources=[])
        session.add(first)
        session.flush()
        first_id = first.id
        session.delete(first)
    with runtime.db.write() as session:
        second = Task(name="x", args={}, progress=[], created_resources=[])
        session.add(second)
        session.flush()
        assert second.id > first_id
