"""Wire bodies of orphan cleanup and reclaim (their results are the tasks' results)."""

from __future__ import annotations

from pydantic import Field

from pallet.api.schemas import Body

# Ten thousand years: far beyond any sensible window (cutoff() clamps to year 1).
MAX_PROTECTION_SECONDS = 10_000 * 365 * 86_400


class OrphanCleanup(Body):
    protection_seconds: float | None = Field(
        None, ge=0, le=MAX_PROTECTION_SECONDS, allow_inf_nan=False,
        strict=True,  # a number: not true, nor "1"
        description="Keep orphans younger than this many seconds (default: the server's "
                    "orphan_protection_seconds). 0 deletes every orphan.")


class OrphanReclaim(Body):
    repositories: list[str] = Field(
        min_length=1, max_length=1000,
        description="Names of the repositories whose old versions' bytes to drop.")
    keep_latest: bool = Field(
        True, description="Keep the bytes of the named repositories' newest versions. False "
                          "drops those too (newest versions of other repositories and served "
                          "versions are always kept).")
