"""`pallet remote ...` (being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="remotes.", no_args_is_help=True)
