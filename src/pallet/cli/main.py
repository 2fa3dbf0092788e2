"""`pallet <noun> <verb>`: the entry point wiring every command group together."""

from __future__ import annotations

import typer

from pallet.cli import (admin, content, distribution, orphan, publication, remote,
                        replication, repository, status, task, token, transfer, upload, user,
                        version)
from pallet.cli.client import ClientGroup, options
from pallet.cli.plugins import add_plugin_commands

# Plain help (rich_markup_mode=None): Typer's rich panels label every flag "<bool>", though
# a flag takes no value. `--install-completion` / `--show-completion`: shell completion.
app = typer.Typer(name="pallet", cls=ClientGroup, no_args_is_help=True, add_completion=True,
                  rich_markup_mode=None,
                  help="Pallet: mirror, version, publish, serve and transfer software content.")
app.callback()(options)
admin.register(app)
status.register(app)
app.add_typer(repository.app, name="repository")
app.add_typer(version.app, name="version")
app.add_typer(remote.app, name="remote")
app.add_typer(publication.app, name="publication")
app.add_typer(distribution.app, name="distribution")
app.add_typer(content.app, name="content")
app.add_typer(content.artifact_app, name="artifact")
app.add_typer(upload.app, name="upload")
app.add_typer(orphan.app, name="orphan")
app.add_typer(transfer.exporter_app, name="exporter")
app.add_typer(transfer.export_app, name="export")
app.add_typer(transfer.importer_app, name="importer")
app.add_typer(transfer.import_app, name="import")
app.add_typer(transfer.key_app, name="signing-key")
app.add_typer(replication.upstream_app, name="upstream")
app.add_typer(replication.downstream_app, name="downstream")
app.add_typer(task.app, name="task")
app.add_typer(user.app, name="user")
app.add_typer(token.app, name="token")
add_plugin_commands(app)


def main() -> None:
    app(prog_name="pallet")  # also as `python -m pallet.cli.main`: usage and completion


if __name__ == "__main__":
    main()
