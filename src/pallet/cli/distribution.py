"""`pallet distribution ...` (being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="distributions.", no_args_is_help=True)
