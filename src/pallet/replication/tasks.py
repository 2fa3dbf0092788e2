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

from contextlib import closing

from pydantic import ValidationError
from sqlalchemy import select

from pallet.distributions.models import Distribution
from pallet.errors import Conflict, Invalid, NotFound
from pallet.replication import offer
from pallet.replication.client import PeerClient, PeerError, excerpt
from pallet.replication.models import Downstream, Replica, Upstream
from pallet.replication.schemas import Catalogue, CatalogueEntry
from pallet.repositories import service as repositories
from pallet.repositories.models import Repository
from pallet.repositories.service import validate_name
from pallet.repositories.versions import latest_version
from pallet.runtime import Runtime
from pallet.tasks.models import Task
from pallet.tasks.registry import task_function
from pallet.tasks.service import create_group
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
        known = _replicas(session, upstream)
    _in_a_group(runtime, task.id, f"replicate from upstream {upstream.name}")
    task.progress("asking the upstream", 0, None)
    with PeerClient(upstream, "upstream") as client:
        offered, absent = _catalogue(client, upstream, sorted(known))
        task.progress("asking the upstream", 1, 1)
        if not offered and not set(known) & set(absent):
            raise _nothing_selected(f"upstream {upstream.name!r} has", upstream)
        wanted, report, mapping = _wanted(runtime, upstream, offered, known)
        received, plan = 0, None
        if wanted:
            rules = ImportRules(mapping=mapping, sources=frozenset(w["name"] for w in wanted))
            with client.stream("/replication/stream", {"repositories": wanted}) as body:
                plan = ArchiveImport(runtime, rules, open_stream(body),
                                     source=f"upstream {upstream.name}", dry_run=False,
                                     progress=task.progress,
                                     base_path_prefix=upstream.base_path_prefix,
                                     after_apply=lambda session, targets: _adopt(
                                         session, upstream, targets)).run()
                if body.read(1):
                    raise PeerError(f"{client.label} sent bytes after the archive's end")
                received = body.received
    _note_versions(runtime, upstream, offered)
    offered_names = {entry.name for entry in offered}
    missing = sorted(set(known) & set(absent))
    deselected = sorted(set(known) - offered_names - set(absent))
    removed = _remove(runtime, upstream, missing) if upstream.remove_missing else []
    for entry in (plan or {}).get("repositories", []):
        if entry.get("version") is not None and not entry["up_to_date"]:
            task.created(f"/api/v1/repositories/{entry['destination']}/versions/"
                         f"{entry['version']}")
    task.result = {"upstream": upstream.name, "repositories": report,
                   "missing_upstream": missing, "no_longer_selected": deselected,
                   "removed": removed, "bytes_received": received,
                   "import": plan["import"] if plan else None,
                   "bytes_written": plan["bytes_to_write"] if plan else 0}


def _nothing_selected(where: str, peer: Upstream | Downstream) -> Invalid:
    """A selection that names nothing is a mistake to say, not a success to report."""
    selection = "; ".join(f"{what}: {', '.join(patterns)}" for what, patterns in
                          (("repositories", peer.repositories),
                           ("distributions", peer.distributions)) if patterns)
    return Invalid(f"{where} no repository that the selection names ({selection}): check "
                   "the names and patterns, and that the user may see them; nothing was "
                   "replicated", code="nothing_selected",
                   details={"repositories": peer.repositories,
                            "distributions": peer.distributions})


def _in_a_group(runtime: Runtime, task_id: int, description: str) -> None:
    """A replication is a task group of its own, queued by hand or by its schedule."""
    with runtime.db.write() as session:
        row = session.get(Task, task_id)
        if row is not None and row.group_id is None:
            row.group_id = create_group(session, description).id


def _replicas(session, upstream: Upstream) -> dict[str, Replica]:
    return {r.source: r for r in session.scalars(
        select(Replica).where(Replica.upstream_id == upstream.id))}


def _catalogue(client: PeerClient, upstream: Upstream, names: list[str]
               ) -> tuple[list[CatalogueEntry], list[str]]:
    """The upstream's answer, checked: well-formed, each name once, each one selected."""
    answer = client.post("/replication/catalogue", {
        "repositories": upstream.repositories, "distributions": upstream.distributions,
        "names": names})
    try:
        catalogue = Catalogue.model_validate(answer)
        for entry in catalogue.repositories:
            validate_name(entry.name)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PeerError(f"{client.label} sent a catalogue this server cannot read: "
                        f"{where}: {excerpt(first['msg'])}") from None
    except Invalid as exc:
        raise PeerError(f"{client.label} sent a catalogue this server cannot read: "
                        f"{excerpt(exc.message)}") from None
    seen: set[str] = set()
    for entry in catalogue.repositories:
        chosen = offer.matches(entry.name, upstream.repositories) or any(
            offer.matches(name, upstream.distributions) for name in entry.distributions)
        if entry.name in seen or not chosen:
            raise PeerError(f"{client.label} offered repository {entry.name!r} "
                            f"{'twice' if entry.name in seen else 'that was not selected'}")
        seen.add(entry.name)
    return catalogue.repositories, catalogue.absent


def _wanted(runtime: Runtime, upstream: Upstream, offered: list[CatalogueEntry],
            known: dict[str, Replica]):
    """What to ask for (the repositories whose replica differs, and what each holds), a
    report line per offered repository, and where each goes here (a replica keeps its
    repository if it was renamed). A local repository that is not this upstream's replica
    is never taken over."""
    wanted, report, mapping = [], [], {}
    with runtime.db.read() as session:
        for entry in offered:
            replica = known.get(entry.name)
            local = session.get(Repository, replica.repository_id) if replica else None
            if local is None:
                local = session.scalar(select(Repository).where(Repository.name == entry.name))
                if local is not None:
                    raise Conflict(f"repository {entry.name!r} exists here and is not a "
                                   f"replica of upstream {upstream.name!r}: rename or delete "
                                   "it, or leave it out of the selection; nothing was "
                                   "replicated", details={"repository": entry.name})
            mapping[entry.name] = local.name if local is not None else entry.name
            current = latest_version(session, local) if local is not None else None
            line = {"name": entry.name, "repository": mapping[entry.name],
                    "upstream_version": entry.version, "digest": entry.digest}
            if current is not None and current.digest == entry.digest:
                if _serving(session, local, upstream, entry):
                    report.append({**line, "state": "up to date"})
                    continue
                report.append({**line, "state": "distributions updated"})
            else:
                report.append({**line, "state": "created" if local is None else "updated"})
            wanted.append({"name": entry.name,
                           "base_version": replica.version if replica is not None and
                           current is not None and replica.digest == current.digest else None,
                           "base_digest": current.digest if current is not None else None})
    return wanted, report, mapping


def _serving(session, local: Repository, upstream: Upstream, entry: CatalogueEntry) -> bool:
    """Whether the replica's distributions already serve what the upstream's do (the same
    names and base paths, under the prefix)."""
    prefix = upstream.base_path_prefix.strip("/")
    wanted = {(d.name, f"{prefix}/{d.base_path.strip('/')}" if prefix else d.base_path.strip("/"))
              for d in entry.serving}
    have = set(session.execute(select(Distribution.name, Distribution.base_path)
                               .where(Distribution.repository_id == local.id)).tuples())
    return wanted <= have


def _adopt(session, upstream: Upstream, targets) -> None:
    """In the import's transaction: every destination is this upstream's replica (one made
    here and now, or one it made before), and remembers the version it now holds."""
    known = {r.repository_id: r for r in session.scalars(
        select(Replica).where(Replica.upstream_id == upstream.id))}
    for target in targets:
        repository = session.scalar(select(Repository).where(
            Repository.name == target.destination))
        replica = known.get(repository.id)
        if target.repository_id is not None and replica is None:
            raise Conflict(f"repository {target.destination!r} here is not a replica of "
                           f"upstream {upstream.name!r}; nothing was replicated",
                           details={"repository": target.destination})
        if replica is None:
            replica = Replica(upstream_id=upstream.id, repository_id=repository.id)
            session.add(replica)
        replica.source = target.entry.name
        replica.version, replica.digest = target.entry.version, target.entry.digest
    session.flush()


def _note_versions(runtime: Runtime, upstream: Upstream,
                   offered: list[CatalogueEntry]) -> None:
    """Replicas already up to date: the upstream version that holds their content now."""
    with runtime.db.write() as session:
        for replica in _replicas(session, upstream).values():
            entry = next((e for e in offered if e.name == replica.source), None)
            if entry is not None and entry.digest == replica.digest:
                replica.version = entry.version


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
        offered = offer.catalogue(session, downstream.repositories,
                                  downstream.distributions)["repositories"]
    _in_a_group(runtime, task.id, f"push into downstream {downstream.name}")
    if not offered:
        raise _nothing_selected("this server has", downstream)
    task.progress("asking the downstream", 0, len(offered))
    with PeerClient(downstream, "downstream") as client:
        try:
            mapping = dict(client.get(f"/importers/{downstream.importer}")["mapping"])
            wanted, report = [], []
            for entry in offered:
                destination = str(mapping.get(entry["name"], entry["name"]))
                held = _held_digest(client, destination)
                task.progress("asking the downstream", len(report) + 1, len(offered))
                line = {"name": entry["name"], "destination": destination,
                        "version": entry["version"], "digest": entry["digest"]}
                if held == entry["digest"]:
                    report.append({**line, "state": "up to date"})
                    continue
                report.append({**line, "state": "created" if held is None else "updated"})
                wanted.append({"name": entry["name"], "base_digest": held})
            answer = None
            if wanted:
                blocks = archive_blocks(runtime, lambda session: offer.prepare_change(
                    session, wanted), name=f"push-{downstream.name}", progress=task.progress,
                    fetch=lambda session: offer.change_selections(session, wanted))
                with closing(blocks):  # if the request never reads it, the export stops
                    answer = client.push(f"/importers/{downstream.importer}/import-stream",
                                         blocks)
                if answer["state"] != "completed":
                    error = (answer.get("error") or {}).get("message", answer["state"])
                    raise PeerError(f"the import on {client.label} failed: "
                                    f"{excerpt(str(error))}",
                                    details={"task": answer.get("href")})
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise PeerError(f"{client.label} answered something this server cannot read "
                            f"({type(exc).__name__}: {excerpt(str(exc))})") from None
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
    version = client.get(f"/repositories/{repository}/versions/{int(shown['latest_version'])}")
    return str(version["digest"])
