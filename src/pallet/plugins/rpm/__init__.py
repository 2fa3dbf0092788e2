"""The `rpm` content type: yum repositories of RPM packages, mirrored from any yum repository
(createrepo_c's, Pulp's, a distribution's) and published for dnf.

- `package.py`: the package unit, its keys and its layout;
- `remote.py`: reading a yum repository (repomd.xml, then primary, filelists and other);
- `publish.py`: writing yum metadata with createrepo_c.

- `advisory.py`: advisories (updateinfo), kept as upstream wrote them.

Comps, modules and copy with dependencies come next (issue 14).
"""

from pallet.plugin import ContentType, Plugin, RepositoryType
from pallet.plugins.rpm import advisory
from pallet.plugins.rpm.package import KEY, NEVRA, TYPE, Package, artifacts, from_file
from pallet.plugins.rpm.publish import RpmPublishOptions, publish
from pallet.plugins.rpm.remote import read_remote
from pallet.plugins.rpm.sync_options import RpmSyncOptions

plugin = Plugin(
    name="rpm",
    description="yum repositories of RPM packages, served to dnf.",
    content_types=(ContentType(name=TYPE, model=Package, key_fields=KEY, artifacts=artifacts,
                               repository_key=NEVRA, from_file=from_file),
                   ContentType(name=advisory.TYPE, model=advisory.Advisory,
                               key_fields=advisory.FIELDS, artifacts=advisory.no_files,
                               repository_key=("id",))),
    repository_types=(RepositoryType(name="rpm", content_types=(TYPE, advisory.TYPE),
                                     description="A yum repository of RPM packages.",
                                     read_remote=read_remote, sync_options=RpmSyncOptions,
                                     publish_options=RpmPublishOptions, publish=publish),),
)
