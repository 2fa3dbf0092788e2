"""Commands plugins contribute: `pallet <plugin> …`, from the entry points of the group
`pallet.plugin.COMMANDS_ENTRY_POINT_GROUP` (each a Typer app)."""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from pallet.plugin import COMMANDS_ENTRY_POINT_GROUP


def add_plugin_commands(app: typer.Typer) -> None:
    taken = {group.name for group in app.registered_groups}
    taken |= {command.name for command in app.registered_commands}
    for entry_point in sorted(entry_points(group=COMMANDS_ENTRY_POINT_GROUP),
                              key=lambda e: e.name):
        if entry_point.name in taken:  # a plugin cannot replace a core command
            continue
        commands = entry_point.load()
        if isinstance(commands, typer.Typer):
            app.add_typer(commands, name=entry_point.name)
