"""`pallet orphan ...` (being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="orphans.", no_args_is_help=True)
