"""Distributions: where the content app serves what. Functions over an explicit session."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from pallet.distributions.models import ServingGeneration

SERVING_CHANGED = "serving_changed"


def serving_changed(session: Session) -> None:
    """Record, in this transaction, that what the content app serves may change: other
    processes see the generation grow, this process is told once the transaction commits."""
    session.execute(update(ServingGeneration).where(ServingGeneration.id == 1)
                    .values(generation=ServingGeneration.generation + 1))
    session.info[SERVING_CHANGED] = True
