"""Commands that run Pallet's processes or open its database directly."""

from __future__ import annotations

import getpass
import os
import tomllib
from contextlib import contextmanager
from typing import Iterator

import typer
from pydantic import ValidationError

from pallet.cli.output import fail
from pallet.errors import PalletError

serve_app = typer.Typer()
db_app = typer.Typer(help="Database schema: upgrade and inspect (opens the database directly).",
                     no_args_is_help=True)
admin_app = typer.Typer(help="Administration that opens the database directly.",
                        no_args_is_help=True)


def load_settings(**overrides):
    from pallet.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        fail(f"the settings are not valid: {problems}")
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        fail(f"the settings are not valid: {exc}")


def runtime_for_admin():
    from pallet.runtime import Runtime

    with database_errors():  # e.g. an artifact store of an unknown layout
        return Runtime.create(load_settings())


@contextmanager
def database_errors() -> Iterator[None]:
    """Database and domain errors of admin commands as one line, never a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except PalletError as exc:
        fail(exc.message)
    except SQLAlchemyError as exc:
        fail(f"the database cannot do this ({type(exc).__name__}: "
             f"{str(exc.orig if hasattr(exc, 'orig') else exc).splitlines()[0]}); is it "
             "reachable, and migrated with 'pallet db upgrade'?")


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(host: str = typer.Option(None, help="Listen address (PALLET_HOST)."),
              port: int = typer.Option(None, help="Listen port (PALLET_PORT)."),
              workers: int = typer.Option(None, help="Worker threads (PALLET_WORKERS).")) -> None:
        """Run the embedded server: REST API, content app and workers in one process;
        migrates on start."""
        from pallet.server import serve as run

        with database_errors():
            run(load_settings(host=host, port=port, workers=workers))

    @app.command()
    def api(host: str = typer.Option(None, help="Listen address (PALLET_HOST)."),
            port: int = typer.Option(None, help="Listen port (PALLET_PORT).")) -> None:
        """Run the REST API alone (scale-out); run `pallet db upgrade` first."""
        from pallet.server import serve as run

        with database_errors():
            run(load_settings(host=host, port=port), with_workers=False, with_content=False,
                migrate=False)

    @app.command("content-app")
    def content_app(host: str = typer.Option(None, help="Listen address (PALLET_HOST)."),
                    port: int = typer.Option(None, help="Listen port (PALLET_PORT).")) -> None:
        """Run the content app alone (scale-out): serves /pallet/content/, no API, no workers."""
        from pallet.server import serve_content

        serve_content(load_settings(host=host, port=port))

    @app.command()
    def worker(threads: int = typer.Option(1, min=1, help="Tasks this process runs at once.")
               ) -> None:
        """Run a worker process (scale-out): claims and runs tasks until stopped."""
        from pallet.server import work

        with database_errors():
            work(load_settings(), threads=threads)

    app.add_typer(db_app, name="db")
    app.add_typer(admin_app, name="admin")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from pallet.db.migrate import current_revision, upgrade

    runtime = runtime_for_admin()
    with database_errors():
        upgrade(runtime.db, plugins=runtime.plugins)
        typer.echo(f"database at revision {current_revision(runtime.db)}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and the newest one this Pallet knows."""
    from pallet.db.migrate import current_revision, head_revision

    runtime = runtime_for_admin()
    with database_errors():
        current, head = current_revision(runtime.db), head_revision(runtime.db)
    typer.echo(f"current: {current or 'empty'}\nhead:    {head}")
    if current != head:
        raise typer.Exit(1)


def read_password(value: str | None) -> str:
    if value:
        return value
    if os.environ.get("PALLET_NEW_PASSWORD"):
        return os.environ["PALLET_NEW_PASSWORD"]
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        fail("the two passwords differ")
    return first


@admin_app.command("create-user")
def create_user(username: str,
                role: list[str] = typer.Option(["viewer"], help="admin, viewer, exporter "
                                                                "or importer; repeatable."),
                password: str = typer.Option(None, help="Else PALLET_NEW_PASSWORD or a prompt.")
                ) -> None:
    """Create a user."""
    from pallet.auth.service import create_user as create

    runtime = runtime_for_admin()
    with database_errors(), runtime.db.write() as session:
        create(session, username=username, password=read_password(password), roles=role)
    typer.echo(f"created user {username} ({', '.join(sorted(set(role)))})")


@admin_app.command("set-password")
def set_password(username: str,
                 password: str = typer.Option(None, help="Else PALLET_NEW_PASSWORD or a prompt.")
                 ) -> None:
    """Set a user's password."""
    from pallet.auth.service import get_user, update_user

    runtime = runtime_for_admin()
    with database_errors(), runtime.db.write() as session:
        update_user(session, get_user(session, username), password=read_password(password))
    typer.echo(f"password of {username} changed")
