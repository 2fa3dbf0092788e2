"""Distributions that travel with an archive: the destination serves the same base paths.

Each distribution that served an exported repository (or its version, or a publication of
it) is created on import, or updated if one of the same name exists, to serve the
destination repository: its newest publication, or its newest version for types without
publications. A base path that overlaps another distribution's is refused by the check,
before anything is imported.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pallet.distributions import service
from pallet.distributions.models import Distribution
from pallet.repositories.models import Repository
from pallet.errors import Conflict
from pallet.publications.models import Publication
from pallet.repositories.models import RepositoryVersion
from pallet.transfer.layout import Header, RepositoryEntry
from pallet.transfer.tarstream import BadArchive


def check_distributions(session: Session, entry: RepositoryEntry,
                        destination_id: int | None) -> None:
    """Invalid if a distribution of `entry` could not be created or moved here: its base path
    overlaps another's, or a distribution of that name serves something else."""
    for wanted in entry.distributions:
        base_path = service.validate_base_path(wanted.base_path)
        existing = session.scalar(select(Distribution).where(Distribution.name == wanted.name))
        if existing is not None and _serves_other(session, existing, destination_id):
            raise Conflict(f"distribution {wanted.name!r} here serves another repository; the "
                           f"archive's distribution of that name cannot take it over (rename "
                           "or delete it, or import without distributions)",
                           details={"distribution": wanted.name})
        service.check_no_overlap(session, base_path,
                                 exclude_id=existing.id if existing is not None else None)


def _serves_other(session: Session, distribution: Distribution,
                  destination_id: int | None) -> bool:
    served = served_repository_id(session, distribution)
    return served is not None and served != destination_id  # serving nothing: free to take


def served_repository_id(session: Session, distribution: Distribution) -> int | None:
    """The repository a distribution serves (itself, a version or a publication of it)."""
    if distribution.repository_id is not None:
        return distribution.repository_id
    if distribution.publication_id is not None:
        return session.get(Publication, distribution.publication_id).repository_id
    if distribution.repository_version_id is not None:
        return session.get(RepositoryVersion, distribution.repository_version_id).repository_id
    return None


def check_archive_distributions(header: Header) -> None:
    """The archive's own distributions must not overlap one another."""
    seen: dict[str, str] = {}
    for entry in header.repositories:
        for wanted in entry.distributions:
            base_path = service.validate_base_path(wanted.base_path)
            for prefix in service.segment_prefixes(base_path):
                if prefix in seen:
                    raise BadArchive(f"the archive's distributions {seen[prefix]!r} and "
                                     f"{wanted.name!r} have overlapping base paths")
            if any(other.startswith(base_path + "/") for other in seen):
                raise BadArchive(f"the archive's distribution {wanted.name!r} overlaps another "
                                 "of its distributions")
            seen[base_path] = wanted.name


def distribute(session: Session, repository: Repository, entry: RepositoryEntry) -> None:
    target = service.Target(repository_id=repository.id)
    for wanted in entry.distributions:
        existing = session.scalar(select(Distribution).where(Distribution.name == wanted.name))
        if existing is None:
            service.create_distribution(session, name=wanted.name, base_path=wanted.base_path,
                                        target=target)
        else:
            service.update_distribution(session, existing, base_path=wanted.base_path,
                                        target=target)
