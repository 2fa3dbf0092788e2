"""The docs stay true: every setting and every CLI command is documented, and the README's
test command is the one CI runs."""

import re
from pathlib import Path

import typer.main

from pallet.cli.main import app
from pallet.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def read(name: str) -> str:
    return (ROOT / name).read_text()


def test_every_setting_is_documented():
    admin = read("docs/admin.md")
    missing = [f"PALLET_{name.upper()}" for name in Settings.model_fields
               if f"`PALLET_{name.upper()}`" not in admin]
    assert missing == []


def _commands(group: typer.Typer, prefix: str = "pallet"):
    click_group = typer.main.get_command(group)

    def walk(command, path):
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                yield from walk(sub, f"{path} {name}")
        else:
            yield path
    yield from walk(click_group, prefix)


def test_every_cli_command_is_documented():
    documented = read("README.md") + read("docs/users.md") + read("docs/admin.md")
    missing = [command for command in _commands(app) if f"`{command}" not in documented]
    assert missing == []


def test_ci_runs_the_readme_test_command():
    command = re.search(r"^run_tests\(\) \{\n\s+(.+)\n\}", read(".ci/run"), re.M).group(1)
    assert command in read("README.md")
