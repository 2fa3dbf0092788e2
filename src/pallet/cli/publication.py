"""`pallet publication ...` (being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="publications.", no_args_is_help=True)
