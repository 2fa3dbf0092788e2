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
from pallet.transfer.layout import RepositoryEntry


def check_distributions(session: Session, entry: RepositoryEntry) -> None:
    """Invalid if a distribution of `entry` could not be created or moved here."""
    for wanted in entry.distributions:
        base_path = service.validate_base_path(wanted.base_path)
        existing = session.scalar(select(Distribution).where(Distribution.name == wanted.name))
        service.check_no_overlap(session, base_path,
                                 exclude_id=existing.id if existing is not None else None)


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
