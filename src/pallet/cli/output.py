"""Printing for people (Rich tables) and for scripts (--json), and failing cleanly."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn, Sequence

import typer
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str | None = None
          ) -> None:
    grid = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(_cell(row.get(column)) for column in columns))
    console.print(grid)


def record(item: dict[str, Any], fields: Sequence[str] | None = None) -> None:
    for key in fields or item.keys():
        console.print(f"[bold]{key}[/bold]: {_cell(item.get(key))}", highlight=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)
