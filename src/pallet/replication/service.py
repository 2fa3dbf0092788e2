"""Upstreams, downstreams and replicas: create, find, list, update, delete, and the task
schedule each peer keeps. Functions over an explicit session; they flush, never commit."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from pallet.distributions.service import validate_base_path
from pallet.db.named import add_named, get_named, page_named
from pallet.errors import Invalid
from pallet.orphans.service import LOCK as ORPHANS_LOCK
from pallet.remotes.downloader import tls_context
from pallet.replication.models import Downstream, Peer, Replica, Upstream
from pallet.repositories.models import Repository
from pallet.repositories.service import validate_name
from pallet.tasks.schedules import remove_schedule, set_schedule

SECRETS = ("password", "token", "client_key")


def _validate(peer: Peer, what: str) -> None:
    validate_name(peer.name, what)
    if not (peer.repositories or peer.distributions):
        raise Invalid(f"the {what} selects nothing: give repositories or distributions "
                      "(names or patterns such as 'web-*')", details={"field": "repositories"})
    for pattern in [*peer.repositories, *peer.distributions]:
        if not pattern or len(pattern) > 255:
            raise Invalid(f"{pattern[:80]!r} is not a name or pattern of 1 to 255 characters",
                          details={"field": "repositories"})
    parts = urlsplit(peer.base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"base_url {peer.base_url[:200]!r} is not an http(s)://host[:port] "
                      "address", details={"field": "base_url"})
    if parts.username or parts.password:
        raise Invalid("base_url holds credentials: give them as username and password (or "
                      "token), which are never shown again", details={"field": "base_url"})
    if peer.token and (peer.username or peer.password):
        raise Invalid("give a token or a username and password, not both",
                      details={"field": "token"})
    tls_context(ca_cert=peer.ca_cert, client_cert=peer.client_cert,
                client_key=peer.client_key, verify=peer.tls_validation)


REQUIRED = ("base_url", "tls_validation", "connect_timeout", "read_timeout", "repositories",
            "distributions", "base_path_prefix", "remove_missing", "importer")


def _apply(peer: Peer, values: dict[str, Any]) -> None:
    """An update: only the fields given change; a required one cannot be cleared; a new
    address needs the credentials again, so none stored for one server go to another."""
    cleared = sorted(key for key in REQUIRED if key in values and values[key] is None)
    if cleared:
        raise Invalid(f"{', '.join(cleared)} cannot be cleared", details={"field": cleared[0]})
    if "base_url" in values and values["base_url"] != peer.base_url:
        stored = [key for key in SECRETS if getattr(peer, key)]
        if stored and not any(key in values for key in SECRETS):
            raise Invalid(f"a new base_url needs the credentials again ({', '.join(stored)}): "
                          "the ones stored were given for the old address",
                          details={"field": "base_url"})
        for key in SECRETS:
            if key not in values:
                setattr(peer, key, None)
    for key, value in values.items():
        setattr(peer, key, value)


# -- upstreams ----------------------------------------------------------------------------

def schedule_name(upstream: Upstream) -> str:
    return f"upstream:{upstream.id}"


def pull_locks(upstream_id: int) -> tuple[list[str], list[str]]:
    """A replication holds its upstream (one at a time) and shares the orphans lock (what
    it stored before the end is in no version yet)."""
    return [f"upstream:{upstream_id}"], [ORPHANS_LOCK]


def _schedule_pull(session: Session, upstream: Upstream) -> None:
    exclusive, shared = pull_locks(upstream.id)
    set_schedule(session, schedule_name(upstream), "replication.pull", upstream.every_seconds,
                 exclusive=exclusive, shared=shared, upstream_id=upstream.id)


def _validate_upstream(upstream: Upstream) -> None:
    upstream.base_path_prefix = (upstream.base_path_prefix or "").strip("/")
    if upstream.base_path_prefix:
        validate_base_path(upstream.base_path_prefix)
    _validate(upstream, "upstream")


def create_upstream(session: Session, **values: Any) -> Upstream:
    upstream = Upstream(**values)
    _validate_upstream(upstream)
    add_named(session, upstream, "upstream")
    _schedule_pull(session, upstream)
    return upstream


def get_upstream(session: Session, name: str) -> Upstream:
    return get_named(session, Upstream, name, "upstream")


def list_upstreams(session: Session, *, limit: int = 100, offset: int = 0):
    return page_named(session, Upstream, limit, offset)


def update_upstream(session: Session, upstream: Upstream, values: dict[str, Any]) -> Upstream:
    _apply(upstream, values)
    _validate_upstream(upstream)
    session.flush()
    _schedule_pull(session, upstream)
    return upstream


def delete_upstream(session: Session, upstream: Upstream) -> None:
    """The upstream goes; its replicas stay, as ordinary repositories."""
    remove_schedule(session, schedule_name(upstream))
    session.delete(upstream)
    session.flush()


def replicas(session: Session, upstream: Upstream) -> list[tuple[Replica, str]]:
    """The upstream's replicas with their local repository's name, by source."""
    return list(session.execute(
        select(Replica, Repository.name).join(Repository, Repository.id == Replica.repository_id)
        .where(Replica.upstream_id == upstream.id).order_by(Replica.source)).tuples())


# -- downstreams ----------------------------------------------------------------------------

def push_locks(downstream_id: int) -> list[str]:
    """A push holds its downstream: one at a time."""
    return [f"downstream:{downstream_id}"]


def _schedule_push(session: Session, downstream: Downstream) -> None:
    set_schedule(session, f"downstream:{downstream.id}", "replication.push",
                 downstream.every_seconds, exclusive=push_locks(downstream.id),
                 downstream_id=downstream.id)


def _validate_downstream(downstream: Downstream) -> None:
    _validate(downstream, "downstream")
    validate_name(downstream.importer, "importer")


def create_downstream(session: Session, **values: Any) -> Downstream:
    downstream = Downstream(**values)
    _validate_downstream(downstream)
    add_named(session, downstream, "downstream")
    _schedule_push(session, downstream)
    return downstream


def get_downstream(session: Session, name: str) -> Downstream:
    return get_named(session, Downstream, name, "downstream")


def list_downstreams(session: Session, *, limit: int = 100, offset: int = 0):
    return page_named(session, Downstream, limit, offset)


def update_downstream(session: Session, downstream: Downstream,
                      values: dict[str, Any]) -> Downstream:
    _apply(downstream, values)
    _validate_downstream(downstream)
    session.flush()
    _schedule_push(session, downstream)
    return downstream


def delete_downstream(session: Session, downstream: Downstream) -> None:
    remove_schedule(session, f"downstream:{downstream.id}")
    session.delete(downstream)
    session.flush()
