"""The upstream's side: what it offers a downstream, and the stream of a change.

A downstream names repositories and distributions by name or shell-style pattern; the
catalogue lists the repositories they select with their newest version and content digest.
The downstream then asks for the change from what it holds: for each repository, the version
number and content digest of its copy. The upstream starts from its own version with that
digest (the number is a hint: the digest decides), or sends the repository in full when it
has no such version, as after a change made downstream.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pallet.distributions.models import Distribution
from pallet.errors import Invalid, NotFound
from pallet.repositories.models import Repository, RepositoryVersion
from pallet.repositories.versions import latest_version
from pallet.transfer import export as exporting
from pallet.transfer.distribute import served_repository_id
from pallet.transfer.tasks import PreparedExport

EXPORTER = "replication"  # the exporter named in a replication stream's header


def matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def selected(session: Session, repositories: list[str], distributions: list[str]
             ) -> list[tuple[Repository, list[str]]]:
    """The repositories the patterns select, directly or through a distribution serving
    them, by name; each with the names of the selected distributions serving it."""
    chosen = {r.id: (r, []) for r in session.scalars(select(Repository))
              if matches(r.name, repositories)}
    if distributions:
        for distribution in session.scalars(select(Distribution).order_by(Distribution.name)):
            if matches(distribution.name, distributions):
                served = served_repository_id(session, distribution)
                if served is None:
                    continue
                if served not in chosen:
                    chosen[served] = (session.get(Repository, served), [])
                chosen[served][1].append(distribution.name)
    return sorted(chosen.values(), key=lambda pair: pair[0].name)


def catalogue(session: Session, repositories: list[str], distributions: list[str],
              names: list[str] = ()) -> dict[str, Any]:
    """What the patterns select, with each newest version and digest; and which of `names`
    (repositories the asker replicated before) do not exist here any more."""
    entries = []
    for repository, through in selected(session, repositories, distributions):
        version = latest_version(session, repository)
        entries.append({"name": repository.name, "type": repository.type,
                        "version": version.number, "digest": version.digest,
                        "distributions": through,
                        "serving": [{"name": n, "base_path": b} for n, b in
                                    exporting.distributions_of(session, repository, version)]})
    existing = set(session.scalars(select(Repository.name).where(Repository.name.in_(names))))
    return {"repositories": entries, "absent": sorted(set(names) - existing)}


def start_version(session: Session, repository: Repository, number: int | None,
                  digest: str | None) -> RepositoryVersion | None:
    """Where a change for a copy holding (`number`, `digest`) starts: that version if its
    digest agrees, else the newest version with that digest, else None (send it whole)."""
    if digest is None:
        return None
    if number is not None:
        version = session.scalar(select(RepositoryVersion).where(
            RepositoryVersion.repository_id == repository.id,
            RepositoryVersion.number == number))
        if version is not None and version.digest == digest:
            return version
    return session.scalar(select(RepositoryVersion).where(
        RepositoryVersion.repository_id == repository.id, RepositoryVersion.digest == digest)
        .order_by(RepositoryVersion.number.desc()).limit(1))


def change_selections(session: Session, wanted: list[dict[str, Any]]
                      ) -> list[exporting.Selection]:
    """What the stream of `wanted` ([{name, base_version, base_digest}]) holds; NotFound
    for a repository this server does not have."""
    if not wanted:
        raise Invalid("name at least one repository to replicate")
    names = [w["name"] for w in wanted]
    if len(set(names)) != len(names):
        raise Invalid("a repository is named twice", details={"repositories": names})
    chosen = []
    for entry in wanted:
        repository = session.scalar(select(Repository).where(Repository.name == entry["name"]))
        if repository is None:
            raise NotFound(f"repository {entry['name']!r} does not exist here",
                           details={"repository": entry["name"]})
        base = start_version(session, repository, entry.get("base_version"),
                             entry.get("base_digest"))
        chosen.append(exporting.Selection(repository, latest_version(session, repository),
                                          base))
    return chosen


def prepare_change(session: Session, wanted: list[dict[str, Any]]) -> PreparedExport:
    """The stream of `wanted`, counted before its first byte."""
    chosen = change_selections(session, wanted)
    exporting.check_downloaded(session, chosen)
    return PreparedExport(chosen, None, exporting.header(session, chosen, exporter=EXPORTER))
