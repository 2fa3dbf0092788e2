"""The replication tasks: pull from an upstream, push into a downstream.

Pull: ask the upstream which repositories the selection names, with their newest version and
content digest; leave alone those whose local replica has that digest; ask for the change of
the others since what their replica holds, as one stream; import it as an archive (every
artifact re-hashed, straight into the store, never to a temporary file). The stream carries
every changed repository, so one transaction makes all their versions and moves all their
distributions, or, if anything fails, none: the old content stays served everywhere.

Push: the same, turned round, for networks where only the upstream may open connections:
ask the downstream's importer what it holds, and stream the change into its import endpoint.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from pallet.errors import Conflict, NotFound
from pallet.replication import offer
from pallet.replication.client import PeerClient, PeerError
from pallet.replication.models import Downstream, Replica, Upstream
from pallet.repositories import service as repositories
from pallet.repositories.models import Repository
from pallet.repositories.versions import latest_version
from pallet.runtime import Runtime
from pallet.tasks.registry import task_function
from pallet.transfer.imports import ArchiveImport, ImportRules
from pallet.transfer.reader import open_stream
from pallet.transfer.streaming import archive_blocks


@task_function("replication.pull")
def pull(runtime: Runtime, task, *, upstream_id: int) -> None:
    with runtime.db.read() as session:
        upstream = session.get(Upstream, upstream_id)
        if upstream is None:
            raise NotFound("the upstream was deleted before the task ran")
        session.expunge(upstream)
    task.progress("asking the upstream", 0, None)
    with PeerClient(upstream, "upstream") as client:
        offered = client.post("/replication/catalogue",
                              {"repositories": upstream.repositories,
                               "distributions": upstream.distributions})["repositories"]
        wanted, report = _wanted(runtime, upstream, offered)
        received, plan = 0, None
        if wanted:
            with client.stream("/replication/stream", {"repositories": wanted}) as body:
                plan = ArchiveImport(runtime, ImportRules(), open_stream(body),
                                     source=f"upstream {upstream.name}", dry_run=False,
                                     progress=task.progress,
                                     base_path_prefix=upstream.base_path_prefix).run()
                if body.read(1):
                    raise PeerError(f"{client.label} sent bytes after the archive's end")
                received = body.received
    missing = _record(runtime, upstream, offered)
    removed = _remove(runtime, upstream, missing) if upstream.remove_missing else []
    for entry in (plan or {}).get("repositories", []):
        if entry.get("version") is not None and not entry["up_to_date"]:
            task.created(f"/api/v1/repositories/{entry['destination']}/versions/"
                         f"{entry['version']}")
    task.result = {"upstream": upstream.name, "repositories": report,
                   "missing_upstream": missing, "removed": removed,
                   "bytes_received": received, "import": plan["import"] if plan else None,
                   "bytes_written": plan["bytes_to_write"] if plan else 0}


def _wanted(runtime: Runtime, upstream: Upstream, offered: list[dict[str, Any]]
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What to ask for (the repositories whose replica differs, and what each holds) and a
    report line per offered repository. A local repository of the same name that is not this
    upstream's replica is never taken over."""
    wanted, report = [], []
    with runtime.db.read() as session:
        known = {r.source: r for r in session.scalars(
            select(Replica).where(Replica.upstream_id == upstream.id))}
        for entry in offered:
            name = entry["name"]
            local = session.scalar(select(Repository).where(Repository.name == name))
            replica = known.get(name)
            if local is not None and (replica is None or replica.repository_id != local.id):
                raise Conflict(f"repository {name!r} exists here and is not a replica of "
                               f"upstream {upstream.name!r}: rename or delete it, or leave it "
                               "out of the selection; nothing was replicated",
                               details={"repository": name})
            current = latest_version(session, local) if local is not None else None
            line = {"name": name, "upstream_version": entry["version"],
                    "digest": entry["digest"]}
            if current is not None and current.digest == entry["digest"]:
                report.append({**line, "state": "up to date"})
                continue
            report.append({**line, "state": "created" if local is None else "updated"})
            wanted.append({"name": name,
                           "base_version": replica.version if replica is not None and
                           current is not None and replica.digest == current.digest else None,
                           "base_digest": current.digest if current is not None else None})
    return wanted, report


def _record(runtime: Runtime, upstream: Upstream, offered: list[dict[str, Any]]) -> list[str]:
    """Remember what each replica now holds; the sources the upstream no longer offers."""
    names = {entry["name"] for entry in offered}
    with runtime.db.write() as session:
        known = {r.source: r for r in session.scalars(
            select(Replica).where(Replica.upstream_id == upstream.id))}
        for entry in offered:
            local = session.scalar(select(Repository).where(Repository.name == entry["name"]))
            replica = known.get(entry["name"])
            if replica is None:
                session.add(Replica(upstream_id=upstream.id, source=entry["name"],
                                    repository_id=local.id, version=entry["version"],
                                    digest=entry["digest"]))
            elif (replica.version, replica.digest) != (entry["version"], entry["digest"]):
                replica.version, replica.digest = entry["version"], entry["digest"]
        return sorted(set(known) - names)


def _remove(runtime: Runtime, upstream: Upstream, missing: list[str]) -> list[str]:
    """Delete the replicas of repositories the upstream no longer has, as asked."""
    removed = []
    with runtime.db.write() as session:
        for replica in session.scalars(select(Replica).where(
                Replica.upstream_id == upstream.id, Replica.source.in_(missing))):
            repository = session.get(Repository, replica.repository_id)
            removed.append(repository.name)
            repositories.delete_repository(session, repository)
    return sorted(removed)


@task_function("replication.push")
def push(runtime: Runtime, task, *, downstream_id: int) -> None:
    with runtime.db.read() as session:
        downstream = session.get(Downstream, downstream_id)
        if downstream is None:
            raise NotFound("the downstream was deleted before the task ran")
        session.expunge(downstream)
        offered = offer.catalogue(session, downstream.repositories, downstream.distributions)
    task.progress("asking the downstream", 0, None)
    with PeerClient(downstream, "downstream") as client:
        importer = client.get(f"/importers/{downstream.importer}")
        wanted, report = [], []
        for entry in offered:
            destination = importer["mapping"].get(entry["name"], entry["name"])
            held = _held_digest(client, destination)
            line = {"name": entry["name"], "destination": destination,
                    "version": entry["version"], "digest": entry["digest"]}
            if held == entry["digest"]:
                report.append({**line, "state": "up to date"})
                continue
            report.append({**line, "state": "created" if held is None else "updated"})
            wanted.append({"name": entry["name"], "base_digest": held})
        answer = None
        if wanted:
            blocks = archive_blocks(runtime, lambda session: offer.prepare_change(session,
                                                                                  wanted),
                                    name=f"push-{downstream.name}")
            answer = client.push(f"/importers/{downstream.importer}/import-stream", blocks)
            if answer["state"] != "completed":
                error = (answer.get("error") or {}).get("message", answer["state"])
                raise PeerError(f"the import on {client.label} failed: {error}",
                                details={"task": answer.get("href")})
    task.result = {"downstream": downstream.name, "repositories": report,
                   "import_task": answer.get("href") if answer else None}


def _held_digest(client: PeerClient, repository: str) -> str | None:
    """The content digest of the downstream's newest version of `repository`, or None."""
    try:
        shown = client.get(f"/repositories/{repository}")
    except PeerError as exc:
        if exc.code == "not_found":
            return None
        raise
    version = client.get(f"/repositories/{repository}/versions/{shown['latest_version']}")
    return version["digest"]
