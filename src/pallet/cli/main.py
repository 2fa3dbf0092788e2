"""`pallet <noun> <verb>`: the entry point wiring every command group together."""

from __future__ import annotations

import typer

from pallet.cli import admin

app = typer.Typer(name="pallet", no_args_is_help=True, add_completion=False,
                  help="Pallet: mirror, version, publish, serve and transfer software content.")
admin.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
