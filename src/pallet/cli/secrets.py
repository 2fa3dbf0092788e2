"""Secrets that need not stand in the process list: an option's value (`--token T`, seen by
every local user in `ps`), or one line of standard input (`--token-stdin`), or a file
(`--token-file PATH`). One command reads standard input for one secret at most."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pallet.cli.client import root_context
from pallet.cli.output import fail

TokenStdin = Annotated[bool, typer.Option("--token-stdin",
                                          help="Read the token from standard input.")]
TokenFile = Annotated[Optional[Path], typer.Option(
    "--token-file", metavar="FILE", dir_okay=False,
    help="Read the token from this file (its first line).")]

_STDIN_READER = "pallet_stdin_secret"  # which option read standard input, in the context


def check_one_source(option: str, value: object, stdin: bool, file: Path | None) -> None:
    """A usage error unless at most one of `--x`, `--x-stdin`, `--x-file` is given."""
    given = [name for name, present in ((option, value is not None),
                                        (f"{option}-stdin", stdin),
                                        (f"{option}-file", file is not None)) if present]
    if len(given) > 1:
        raise typer.BadParameter(f"give {' or '.join(given)}, not several",
                                 param_hint=given[0])


def secret(option: str, value: str | None, *, stdin: bool = False,
           file: Path | None = None) -> str | None:
    """The secret from the one source given, or None if none is."""
    check_one_source(option, value, stdin, file)
    if stdin:
        return _stdin_line(f"{option}-stdin")
    if file is not None:
        return _file_line(f"{option}-file", file)
    return value


def _stdin_line(option: str) -> str:
    earlier = root_context().meta.setdefault(_STDIN_READER, option)
    if earlier != option:
        raise typer.BadParameter(f"{earlier} and {option} both read standard input; give "
                                 "one of the secrets another way", param_hint=option)
    # The binary buffer, read to the newline only: an archive may follow (`importer run -`).
    line = sys.stdin.buffer.readline().decode("utf-8", "replace").rstrip("\r\n")
    if not line:
        fail(f"{option}: standard input holds no line to read")
    return line


def _file_line(option: str, file: Path) -> str:
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{option}: cannot read {file}: {getattr(exc, 'strerror', None) or exc}")
    if not lines or not lines[0].strip():
        fail(f"{option}: {file} is empty")
    return lines[0].strip()
