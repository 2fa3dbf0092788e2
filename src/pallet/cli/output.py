"""Printing for people (Rich tables) and for scripts (--json), and failing cleanly."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Annotated, Any, Callable, NoReturn, Sequence, Union

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
errors = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON, for scripts.")]

# A column is a field name, or a header with a function computing the cell from the item.
Column = Union[str, tuple[str, Callable[[dict[str, Any]], Any]]]

ISO_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]00:?00)?$")
# Control characters (C0, DEL, C1) and bidirectional overrides: in text from a server or an
# archive they could move the cursor, retitle or clear the terminal, or reorder what it shows.
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
PIPED_WIDTH = 1 << 16  # piped, a table is as wide as its rows


def printable(text: str) -> str:
    """`text` with each control character written as its escape (`\\x1b`, `\\u202e`)."""
    return UNPRINTABLE.sub(_escaped, text)


def _escaped(match: re.Match) -> str:
    character = match.group()
    if character in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def error_line(message: str) -> None:
    errors.print(f"[red]error:[/red] {escape(printable(message))}", highlight=False,
                 soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    error_line(message)
    raise typer.Exit(code)


def say(message: str) -> None:
    """A line for people; plain text, never markup."""
    console.print(printable(message), markup=False, highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """A line for people on stderr, so it does not mix with --json on stdout."""
    errors.print(printable(message), markup=False, highlight=False, soft_wrap=True)


def deleted(what: str, href: str, *, as_json: bool) -> None:
    """A delete the API answered with no body: `{"deleted": href}` for scripts."""
    if as_json:
        emit_json({"deleted": href})
    else:
        say(f"{what} deleted")


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str | None = None
          ) -> None:
    grid = Table(title=title, show_edge=False, header_style="bold")
    getters = []
    for column in columns:
        header, getter = column if isinstance(column, tuple) else (column, _field(column))
        grid.add_column(header, overflow="fold")
        getters.append(getter)
    for row in rows:
        grid.add_row(*(escape(printable(_cell(getter(row)))) for getter in getters))
    _table_console().print(grid)


def _table_console() -> Console:
    """At a terminal, or with COLUMNS set, the console at its width; piped, one without a
    limit: Rich would fold long cells onto more lines at 80 columns, and a script reading
    the rows would split them."""
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(width=PIPED_WIDTH)


def record(item: dict[str, Any], fields: Sequence[Column] | None = None) -> None:
    for column in fields or list(item.keys()):
        key, getter = column if isinstance(column, tuple) else (column, _field(column))
        console.print(f"[bold]{escape(printable(key))}[/bold]: "
                      f"{escape(printable(_cell(getter(item))))}", highlight=False,
                      soft_wrap=True)


def show_record(item: dict[str, Any], fields: Sequence[Column] | None = None, *,
                as_json: bool) -> None:
    if as_json:
        emit_json(item)
    else:
        record(item, fields)


def plural(count: int, noun: str) -> str:
    """"1 repository", "2 repositories", "3 content units"."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun[:-1]}ies" if noun.endswith("y") else f"{count} {noun}s"


def show_page(body: dict[str, Any], columns: Sequence[Column], *, as_json: bool,
              noun: str) -> None:
    """A list from the API: a table and how much of it is shown, or the page's JSON.
    `noun` is singular: "repository"."""
    if as_json:
        emit_json(body)
        return
    results, count = body["results"], body["count"]
    if results:
        table(results, columns)
    if len(results) == count:
        note(plural(count, noun))
    else:
        note(f"{len(results)} of {plural(count, noun)} shown (use --limit and --offset to page)")


def _field(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda item: item.get(name)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(map(str, value))
    if isinstance(value, dict) and all(isinstance(v, (str, int, float, type(None)))
                                       for v in value.values()):
        return ", ".join(f"{key}: {_cell(v)}" for key, v in sorted(value.items()))
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and (match := ISO_TIME.match(value)):
        return f"{match.group(1)} {match.group(2)}"
    return str(value)
