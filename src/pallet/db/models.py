"""Every table, imported in one place so Alembic and create_all see the whole schema."""

from pallet.artifacts.models import Artifact
from pallet.auth.models import ApiToken, User
from pallet.content.models import Content, ContentArtifact
from pallet.distributions.models import Distribution, ServingGeneration
from pallet.publications.models import Publication, PublishedMetadata
from pallet.remotes.models import Remote, RemoteArtifact
from pallet.replication.models import Downstream, Replica, Upstream
from pallet.repositories.models import Repository, RepositoryContent, RepositoryVersion
from pallet.transfer.models import Export, Exporter, Import, Importer, SigningKey
from pallet.tasks.models import DispatchLock, Task, TaskGroup, TaskLock, TaskSchedule, Worker
from pallet.uploads.models import Upload, UploadChunk

__all__ = ["Artifact", "ApiToken", "User", "Content", "ContentArtifact", "Repository",
           "RepositoryContent", "RepositoryVersion", "DispatchLock", "Task", "TaskGroup",
           "TaskLock", "Worker", "Upload", "UploadChunk", "Distribution", "ServingGeneration",
           "Publication", "PublishedMetadata", "Remote", "RemoteArtifact", "SigningKey",
           "Exporter", "Export", "Importer", "Import", "TaskSchedule", "Upstream",
           "Downstream", "Replica"]
