"""Rows that have a unique `name` (exporters, importers, upstreams…): find one, add one,
list a page. Functions over an explicit session; they flush, never commit."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pallet.errors import Conflict, NotFound


def get_named(session: Session, model, name: str, what: str):
    """The row of `model` named `name`, or NotFound naming the `what`."""
    row = session.scalar(select(model).where(model.name == name))
    if row is None:
        raise NotFound(f"there is no {what} named {name!r}", details={"name": name})
    return row


def add_named(session: Session, row, what: str) -> None:
    """Add a new named row; Conflict if the name is taken, even by a concurrent insert."""
    if session.scalar(select(type(row).id).where(type(row).name == row.name)) is not None:
        raise Conflict(f"a {what} named {row.name!r} exists already", details={"name": row.name})
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # created by someone else between the check and here
        raise Conflict(f"a {what} named {row.name!r} exists already",
                       details={"name": row.name}) from None


def page_named(session: Session, model, limit: int, offset: int, order=None):
    """(count, one page of rows), by name unless `order` says otherwise."""
    count = session.scalar(select(func.count()).select_from(model))
    order = model.name if order is None else order
    return count, list(session.scalars(select(model).order_by(order).limit(limit).offset(offset)))
