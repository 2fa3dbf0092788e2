"""The `rpm` content type: yum repositories of RPM packages, mirrored from any yum repository
(createrepo_c's, Pulp's, a distribution's) and published for dnf.

- `package.py`: the package unit, its keys and its layout;
- `remote.py`: reading a yum repository (repomd.xml, then primary, filelists and other, then
  the rest);
- `publish.py`: writing yum metadata with createrepo_c.
- `advisory.py`: advisories (updateinfo), kept as upstream wrote them.
- `comps.py`: groups, categories, environments and langpacks (comps.xml), read and written by
  libcomps.
- `modules.py`: module streams, their defaults and other modulemd documents (modules.yaml),
  each document's text kept verbatim.
- `metadata.py`: other files repomd.xml names (productid, ...), kept verbatim.
- `depsolve.py`: what a copy with dependencies brings, solved by libsolv.
- `routes.py` / `commands.py`: the type's API routes (/api/v1/rpm/...) and CLI commands
  (`pallet rpm ...`); `nevra.py`: NEVRA text, light enough for the CLI.
"""

from pallet.plugin import ContentType, Plugin, RepositoryType
from pallet.plugins.rpm import advisory, comps, depsolve, metadata, modules
from pallet.plugins.rpm.package import KEY, NEVRA, TYPE, Package, artifacts, from_file
from pallet.plugins.rpm.publish import GENERATED_FILES, RpmPublishOptions, publish
from pallet.plugins.rpm.remote import read_remote
from pallet.plugins.rpm.sync_options import RpmSyncOptions
from pallet.plugins.rpm.routes import routes

_COMPS_REFERENCES = {comps.GROUP: comps.group_references}
_MODULE_REFERENCES = {modules.MODULE: modules.module_references}


def _every_field(name, model, repository_key, no_files, references=None) -> ContentType:
    """A type whose natural key is every field (a unit changed upstream is another unit)."""
    return ContentType(name=name, model=model, key_fields=tuple(model.model_fields),
                       artifacts=no_files, repository_key=repository_key,
                       references=references)


CONTENT_TYPES = (
    ContentType(name=TYPE, model=Package, key_fields=KEY, artifacts=artifacts,
                repository_key=NEVRA, from_file=from_file, indexes=(("name", "arch"),)),
    ContentType(name=advisory.TYPE, model=advisory.Advisory, key_fields=advisory.FIELDS,
                artifacts=advisory.no_files, repository_key=("id",),
                references=advisory.references, indexes=(("id",),)),
    *(_every_field(name, comps.MODELS[name], comps.REPOSITORY_KEYS[name], comps.no_files,
                   _COMPS_REFERENCES.get(name)) for name in comps.TYPES),
    *(_every_field(name, modules.MODELS[name], modules.REPOSITORY_KEYS[name],
                   modules.no_files, _MODULE_REFERENCES.get(name)) for name in modules.TYPES),
    ContentType(name=metadata.TYPE, model=metadata.Metadata,
                key_fields=tuple(metadata.Metadata.model_fields),
                artifacts=metadata.artifacts, repository_key=("type",)),
)

plugin = Plugin(
    name="rpm",
    description="yum repositories of RPM packages, served to dnf.",
    routes=routes,
    content_types=CONTENT_TYPES,
    repository_types=(RepositoryType(name="rpm",
                                     content_types=tuple(t.name for t in CONTENT_TYPES),
                                     description="A yum repository of RPM packages.",
                                     read_remote=read_remote, sync_options=RpmSyncOptions,
                                     publish_options=RpmPublishOptions, publish=publish,
                                     dependencies=depsolve.dependencies,
                                     generated_files=GENERATED_FILES),),
)
