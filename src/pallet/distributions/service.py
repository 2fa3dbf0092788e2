"""Distributions: where the content app serves what. Functions over an explicit session.

A distribution serves one target: a publication, a repository version, or a repository (its
newest publication), given here by id; or nothing. Base paths never overlap: none equals, or
is a path-segment prefix of, another ("a/b" conflicts with "a" and "a/b/c", not "a/bc"), so a
request path belongs to one distribution at most.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pallet.distributions.models import Distribution
from pallet.distributions.serving import serving_changed
from pallet.errors import Conflict, Invalid, NotFound
from pallet.paths import validate_relative_path

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


@dataclass(frozen=True)
class Target:
    """What a distribution serves: at most one of the three ids is set."""

    publication_id: int | None = None
    repository_version_id: int | None = None
    repository_id: int | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.publication_id, self.repository_version_id,
                                       self.repository_id)) > 1:
            raise Invalid("a distribution serves one target at most: a publication, a "
                          "repository version or a repository", details={"field": "target"})


NOTHING = Target()


def validate_base_path(base_path: str) -> str:
    """The base path without surrounding '/', or Invalid saying why it cannot be one."""
    if not isinstance(base_path, str):
        raise Invalid("base_path must be a string", details={"field": "base_path"})
    return validate_relative_path(base_path.strip("/"), what="base_path")


def create_distribution(session: Session, *, name: str, base_path: str,
                        target: Target = NOTHING, hidden: bool = False) -> Distribution:
    _validate_name(name)
    base_path = validate_base_path(base_path)
    # First, before the flush would: on PostgreSQL the generation row's lock serializes the
    # checks below with every other change of what is served.
    serving_changed(session)
    _check_name_free(session, name)
    check_no_overlap(session, base_path)
    distribution = Distribution(name=name, base_path=base_path, hidden=hidden)
    _set_target(distribution, target)
    session.add(distribution)
    _flush(session, name)
    return distribution


def get_distribution(session: Session, name: str) -> Distribution:
    distribution = session.scalar(select(Distribution).where(Distribution.name == name))
    if distribution is None:
        raise NotFound(f"there is no distribution named {name!r}", details={"name": name})
    return distribution


def list_distributions(session: Session, *, name: str | None = None,
                       base_path: str | None = None, hidden: bool | None = None,
                       limit: int = 100, offset: int = 0) -> tuple[int, list[Distribution]]:
    query = select(Distribution)
    if name is not None:
        query = query.where(Distribution.name == name)
    if base_path is not None:
        query = query.where(Distribution.base_path == base_path.strip("/"))
    if hidden is not None:
        query = query.where(Distribution.hidden.is_(hidden))
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    items = session.scalars(query.order_by(Distribution.name).limit(limit).offset(offset))
    return count, list(items)


def update_distribution(session: Session, distribution: Distribution, *,
                        name: str | None = None, base_path: str | None = None,
                        target: Target | None = None, hidden: bool | None = None
                        ) -> Distribution:
    """Change what is given (None: unchanged); `target` replaces the whole target."""
    serving_changed(session)  # first, as in create_distribution: the checks hold to the commit
    if name is not None and name != distribution.name:
        _validate_name(name)
        _check_name_free(session, name)
        distribution.name = name
    if base_path is not None:
        base_path = validate_base_path(base_path)
        if base_path != distribution.base_path:
            check_no_overlap(session, base_path, exclude_id=distribution.id)
            distribution.base_path = base_path
    if target is not None:
        _set_target(distribution, target)
    if hidden is not None:
        distribution.hidden = hidden
    _flush(session, distribution.name)
    return distribution


def delete_distribution(session: Session, distribution: Distribution) -> None:
    session.delete(distribution)
    session.flush()


def segment_prefixes(base_path: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b', 'a/b/c']: the base paths that would contain it or equal it."""
    segments = base_path.split("/")
    return ["/".join(segments[:i]) for i in range(1, len(segments) + 1)]


def check_no_overlap(session: Session, base_path: str, exclude_id: int | None = None) -> None:
    """Two indexed look-ups, never a scan of every distribution: the base paths that are
    `base_path` or one of its segment prefixes, and those under `base_path/`."""
    others = Distribution.id != exclude_id if exclude_id is not None else true()
    rows = session.execute(select(Distribution.name, Distribution.base_path).where(
        Distribution.base_path.in_(segment_prefixes(base_path)), others).limit(1)).all()
    if not rows:
        escaped = re.sub(r"([\\%_])", r"\\\1", base_path)
        below = session.execute(select(Distribution.name, Distribution.base_path).where(
            Distribution.base_path.like(f"{escaped}/%", escape="\\"), others)
            .order_by(Distribution.base_path).limit(100)).all()
        # SQLite's LIKE ignores case: keep the true prefixes only.
        rows = [row for row in below if row.base_path.startswith(base_path + "/")][:1]
    if rows:
        name, other = rows[0]
        relation = ("is the base path of" if other == base_path else
                    "is inside the base path of" if base_path.startswith(other + "/") else
                    "contains the base path of")
        raise Invalid(f"base path {base_path!r} {relation} distribution {name!r} ({other!r}); "
                      "base paths may not overlap",
                      details={"field": "base_path", "distribution": name, "base_path": other})


def _set_target(distribution: Distribution, target: Target) -> None:
    distribution.publication_id = target.publication_id
    distribution.repository_version_id = target.repository_version_id
    distribution.repository_id = target.repository_id


def _validate_name(name: str) -> None:
    if not isinstance(name, str) or not NAME.match(name):
        raise Invalid(f"distribution name {str(name)[:80]!r} is not allowed: use 1 to 255 "
                      "letters, digits, '.', '_' or '-', starting with a letter or digit",
                      details={"field": "name"})


def _check_name_free(session: Session, name: str) -> None:
    if session.scalar(select(Distribution.id).where(Distribution.name == name)) is not None:
        raise Conflict(f"a distribution named {name!r} exists already", details={"name": name})


def _flush(session: Session, name: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # a name, base path or target changed between the checks and here
        raise Conflict(f"distribution {name!r} conflicts with a change made at the same "
                       "time; read it again and retry", details={"name": name}) from None

