"""`pallet orphan ...`: delete what nothing references, and reclaim old versions' space."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pallet.cli.client import connect, path
from pallet.cli.output import JsonFlag, plural, say
from pallet.cli.task import NoWait, report

app = typer.Typer(help="Orphans: delete content and artifacts nothing references, and "
                       "reclaim the space of content only old versions hold.",
                  no_args_is_help=True)


def size_text(count: int) -> str:
    """Bytes for people: "512 bytes", "1.5 MiB"."""
    if count < 1024:
        return f"{count} bytes"
    value = count / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def describe_cleanup(task: dict[str, Any]) -> None:
    result = task["result"] or {}
    say(f"deleted {plural(result.get('content_deleted', 0), 'content unit')} and "
        f"{plural(result.get('artifacts_deleted', 0), 'artifact')}, freed "
        f"{size_text(result.get('bytes_freed', 0))}")


def describe_reclaim(task: dict[str, Any]) -> None:
    result = task["result"] or {}
    say(f"dropped the stored bytes of "
        f"{plural(result.get('content_reclaimed', 0), 'content unit')} (fetched again on "
        f"demand), deleted {plural(result.get('artifacts_deleted', 0), 'artifact')}, freed "
        f"{size_text(result.get('bytes_freed', 0))}")


@app.command("cleanup")
def cleanup(protection_time: Annotated[float | None, typer.Option(
                "--protection-time", min=0,
                help="Keep orphans younger than this many seconds (default: the server's "
                     "orphan_protection_seconds, one day unless configured). 0 deletes "
                     "every orphan.")] = None,
            no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Delete content in no repository version and artifacts nothing references."""
    body = {} if protection_time is None else {"protection_seconds": protection_time}
    api = connect()
    report(api, api.post(path("orphans", "cleanup"), body), no_wait=no_wait, as_json=as_json,
           describe=describe_cleanup)


@app.command("reclaim")
def reclaim(repositories: Annotated[list[str], typer.Argument(
                help="The repositories whose old versions' bytes to drop.")],
            no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Drop the stored bytes of content only old versions hold, when a remote can deliver
    it again; the newest and served versions keep theirs."""
    api = connect()
    report(api, api.post(path("orphans", "reclaim"), {"repositories": repositories}),
           no_wait=no_wait, as_json=as_json, describe=describe_reclaim)
