"""`pallet repository ...`: create, list, show, update, delete, modify and repair
repositories."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, Iterable, TextIO

import typer

from pallet.cli.client import ClientError, Limit, Offset, connect, path
from pallet.cli.output import (JsonFlag, emit_json, fail, note, plural, record, say,
                               show_page, show_record)
from pallet.cli.publication import parse_options
from pallet.cli.task import (Describe, NoWait, group_tasks, queued, report,
                             wait_for_group)
from pallet.cli.version import ReportOnly, check_repaired, show_repair

app = typer.Typer(help="Repositories: named, versioned sets of content.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="The repository's name.")]
Description = Annotated[str | None, typer.Option(help="A sentence about the repository.")]
RetainVersions = Annotated[int | None, typer.Option(
    min=1, help="Keep only the newest N versions; older ones are deleted as new ones come.")]
ContentIds = Annotated[list[int] | None, typer.Option(
    metavar="ID", help="A content unit's id; repeatable.")]
IdsFile = Annotated[typer.FileText | None, typer.Option(
    metavar="FILE", help="A file with one content id per line ('-': standard input).")]

COLUMNS = ["name", "type", "latest_version", "retain_versions", "remote", "autopublish",
           "description", "updated_at"]
FIELDS = ["name", "type", "description", "latest_version", "retain_versions", "remote",
          "autopublish", "publish_options", "href", "created_at", "updated_at"]
PublishOptions = Annotated[list[str] | None, typer.Option(
    "--publish-option", metavar="KEY=VALUE",
    help="A publish option of the repository's type (e.g. manifest=PULP_MANIFEST), used "
         "when it auto-publishes; repeatable.")]


@app.command("create")
def create(name: Name,
           type: Annotated[str, typer.Option(help="Repository type (`pallet status` lists "
                                                  "them).")] = "file",
           description: Description = None, retain_versions: RetainVersions = None,
           remote: Annotated[str | None, typer.Option(
               help="The remote `sync` uses when none is named.")] = None,
           autopublish: Annotated[bool, typer.Option(
               "--autopublish", help="Publish every new version, in the task that makes "
                                     "it.")] = False,
           publish_option: PublishOptions = None,
           distribute: Annotated[str | None, typer.Option(
               metavar="BASE_PATH", help="Also create a distribution of the same name that "
                                         "serves the repository at this base path.")] = None,
           as_json: JsonFlag = False) -> None:
    """Create an empty repository (its version 0), and with --distribute its distribution."""
    body = {"name": name, "type": type, "description": description or "",
            "retain_versions": retain_versions, "remote": remote, "autopublish": autopublish,
            "publish_options": parse_options(publish_option, "--publish-option")}
    api = connect()
    if distribute is None:
        show_record(api.post("repositories", body), FIELDS, as_json=as_json)
        return
    # The distribution first (its base path is the likelier refusal), with no target until
    # the repository exists; removed again if the repository cannot be created.
    api.post("distributions", {"name": name, "base_path": distribute})
    try:
        repository = api.post("repositories", body)
    except ClientError:
        with contextlib.suppress(ClientError):
            api.delete(path("distributions", name))
        raise
    distribution = api.patch(path("distributions", name), {"repository": name})
    if as_json:
        emit_json({"repository": repository, "distribution": distribution})
        return
    record(repository, FIELDS)
    say(f"distribution {name} serves it at {distribution['base_url']}")


@app.command("list")
def list_repositories(name_contains: Annotated[str | None, typer.Option(
                          help="Only repositories whose name contains this.")] = None,
                      type: Annotated[str | None, typer.Option(
                          help="Only repositories of this type.")] = None,
                      limit: Limit = None, offset: Offset = None,
                      as_json: JsonFlag = False) -> None:
    """List repositories."""
    body = connect().page("repositories", name_contains=name_contains, type=type, limit=limit,
                          offset=offset)
    show_page(body, COLUMNS, as_json=as_json, noun="repository")


@app.command("show")
def show(name: Name, as_json: JsonFlag = False) -> None:
    """Show a repository."""
    show_record(connect().get(path("repositories", name)), FIELDS, as_json=as_json)


@app.command("update")
def update(name: Name, description: Description = None, retain_versions: RetainVersions = None,
           keep_all_versions: Annotated[bool, typer.Option(
               "--keep-all-versions", help="Keep every version (undoes --retain-versions).")
           ] = False,
           new_name: Annotated[str | None, typer.Option(help="Rename the repository.")] = None,
           remote: Annotated[str | None, typer.Option(
               help="The remote `sync` uses when none is named.")] = None,
           no_remote: Annotated[bool, typer.Option(
               "--no-remote", help="Forget the repository's remote.")] = False,
           autopublish: Annotated[bool | None, typer.Option(
               "--autopublish/--no-autopublish", show_default=False,
               help="Publish every new version, or stop doing so.")] = None,
           publish_option: PublishOptions = None,
           default_publish_options: Annotated[bool, typer.Option(
               "--default-publish-options",
               help="Forget the stored publish options: use the type's defaults.")] = False,
           as_json: JsonFlag = False) -> None:
    """Change a repository's description, version retention, name, remote or publishing.
    --publish-option replaces every stored publish option."""
    if retain_versions is not None and keep_all_versions:
        fail("give --retain-versions or --keep-all-versions, not both")
    if remote is not None and no_remote:
        fail("give --remote or --no-remote, not both")
    if publish_option and default_publish_options:
        fail("give --publish-option or --default-publish-options, not both")
    changes: dict[str, Any] = {}
    if description is not None:
        changes["description"] = description
    if retain_versions is not None or keep_all_versions:
        changes["retain_versions"] = retain_versions
    if new_name is not None:
        changes["name"] = new_name
    if remote is not None or no_remote:
        changes["remote"] = remote
    if autopublish is not None:
        changes["autopublish"] = autopublish
    if publish_option or default_publish_options:
        changes["publish_options"] = parse_options(publish_option, "--publish-option")
    if not changes:
        fail("nothing to change: give --description, --retain-versions, --keep-all-versions, "
             "--new-name, --remote, --no-remote, --autopublish, --no-autopublish, "
             "--publish-option or --default-publish-options")
    show_record(connect().patch(path("repositories", name), changes), FIELDS, as_json=as_json)


@app.command("delete")
def delete(name: Name, no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Delete a repository and all its versions (its content units stay)."""
    api = connect()
    report(api, api.delete(path("repositories", name)), no_wait=no_wait, as_json=as_json,
           describe=lambda task: say(f"repository {name} deleted"))


def read_ids(file: TextIO | None, option: str) -> list[int]:
    """Content ids, one a line; blank lines and lines starting with '#' are skipped."""
    if file is None:
        return []
    ids = []
    for number, line in enumerate(file, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            if not (text.isascii() and text.isdigit()):
                fail(f"{option} {file.name}, line {number}: {text[:40]!r} is not a content id")
            ids.append(int(text))
    return ids


def describe_modify(name: str) -> Describe:
    """How a finished modify of repository `name` reads: the version it made, if any."""
    def describe(task: dict[str, Any]) -> None:
        version = (task["result"] or {}).get("version")
        if version is None:
            say(f"repository {name}: nothing changed, no new version")
        else:
            say(f"repository {name}: created version {version}")
    return describe


def _ids(given: Iterable[int] | None, file: TextIO | None, option: str) -> list[int]:
    return list(given or []) + read_ids(file, option)


@app.command("modify")
def modify(name: Name, add: ContentIds = None, remove: ContentIds = None,
           add_from: IdsFile = None, remove_from: IdsFile = None,
           remove_all: Annotated[bool, typer.Option(
               "--remove-all", help="Start from an empty set instead of the base version.")
           ] = False,
           base_version: Annotated[int | None, typer.Option(
               min=0, help="The version to start from (default: the newest).")] = None,
           no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Add and remove content units, making a new version (none if nothing changes)."""
    body = {"add_content": _ids(add, add_from, "--add-from"),
            "remove_content": _ids(remove, remove_from, "--remove-from"),
            "remove_all": remove_all, "base_version": base_version}
    api = connect()
    report(api, api.post(path("repositories", name, "modify"), body), no_wait=no_wait,
           as_json=as_json, describe=describe_modify(name))


Match = Annotated[list[str] | None, typer.Option(
    "--match", metavar="TYPE:FIELD=VALUE[,FIELD=VALUE]",
    help="Units of the source with these field values, e.g. rpm.package:name=bash; "
         "repeatable.")]


def parse_match(given: str) -> dict[str, Any]:
    """`rpm.package:name=bash,arch=x86_64` as a copy's match."""
    type_, _, pairs = given.partition(":")
    fields = dict(pair.partition("=")[::2] for pair in pairs.split(",") if pair)
    if not type_ or not fields or not all(fields) or not all(fields.values()):
        fail(f"--match {given!r}: write TYPE:FIELD=VALUE[,FIELD=VALUE], e.g. "
             "rpm.package:name=bash", code=2)
    return {"type": type_, "fields": fields}


@app.command("copy")
def copy(name: Annotated[str, typer.Argument(help="The repository to copy into.")],
         source: Annotated[str, typer.Option("--from", help="The repository to copy from.")],
         source_version: Annotated[int | None, typer.Option(
             min=0, help="Its version (default: the newest).")] = None,
         content: ContentIds = None, match: Match = None,
         references: Annotated[bool, typer.Option(
             "--references/--no-references", help="Bring along the units the copied ones "
                                                  "name (an advisory's packages).")] = True,
         dependencies: Annotated[bool, typer.Option(
             "--dependencies", help="Also copy what the type says they need (rpm: "
                                    "dependencies solved by libsolv).")] = False,
         no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Copy units of another repository into a new version of this one: by id or by field
    values, with the units they reference, and optionally their dependencies."""
    body = {"source": source, "source_version": source_version, "content": list(content or []),
            "match": [parse_match(m) for m in match or []], "references": references,
            "dependencies": dependencies}
    start_copy(name, body, no_wait=no_wait, as_json=as_json)


def start_copy(name: str, body: dict[str, Any], *, no_wait: bool, as_json: bool) -> None:
    """Run a copy into `name` (the API's copy request `body`) and say what it did."""
    api = connect()
    report(api, api.post(path("repositories", name, "copy"), body), no_wait=no_wait,
           as_json=as_json, describe=describe_copy(name))


def describe_copy(name: str) -> Describe:
    def describe(task: dict[str, Any]) -> None:
        result = task["result"] or {}
        brought = (f"{plural(result.get('chosen', 0), 'unit')} chosen, "
                   f"{result.get('referenced', 0)} referenced, "
                   f"{result.get('dependencies', 0)} dependencies")
        if result.get("version") is None:
            say(f"repository {name}: {brought}; all there already, no new version")
        else:
            say(f"repository {name}: {brought}; created version {result['version']}")
        for sentence in result.get("unresolved", []):
            note(f"unresolved: {sentence}")
        broken = result.get("broken_references")
        if broken:
            note(f"{plural(broken['count'], 'reference')} not satisfied in the new version "
                 "(`pallet version show` lists examples)")
    return describe


@app.command("repair")
def repair(name: Name, report_only: ReportOnly = False, no_wait: NoWait = False,
           as_json: JsonFlag = False) -> None:
    """Re-hash the artifacts of every version and fetch the missing and corrupt ones again
    from their remotes; exits 1 if some could not be restored."""
    api = connect()
    group = api.post(path("repositories", name, "repair"), {"report_only": report_only})
    if no_wait:
        queued(group, "task group", as_json=as_json)
        return
    group = wait_for_group(api, group)
    tasks = group_tasks(api, group)
    if as_json:
        emit_json({"group": group, "tasks": tasks})
    else:
        show_repair([t["result"] for t in tasks if t["state"] == "completed"])
    unfinished = [t for t in tasks if t["state"] != "completed"]
    if unfinished:
        fail(f"{len(unfinished)} of the {len(tasks)} repair tasks did not complete: "
             + ", ".join(f"task {t['id']} {t['state']}" for t in unfinished))
    check_repaired([t["result"] for t in tasks])


def describe_sync(name: str) -> Describe:
    """How a finished sync of repository `name` reads: the version it made, if any."""
    def describe(task: dict[str, Any]) -> None:
        result = task["result"] or {}
        fetched = (f"{result.get('units', 0)} units in the index, "
                   f"{result.get('downloaded', 0)} files downloaded "
                   f"({result.get('bytes', 0)} bytes), {result.get('reused', 0)} reused")
        if result.get("version") is None:
            say(f"repository {name}: nothing changed, no new version ({fetched})")
            return
        made = f"created version {result['version']}"
        if result.get("publication") is not None:
            made += f" (publication {result['publication']})"
        say(f"repository {name}: {made} ({fetched})")
    return describe


@app.command("sync")
def sync(name: Name,
         remote: Annotated[str | None, typer.Option(
             help="The remote to sync from (default: the repository's remote).")] = None,
         mirror: Annotated[bool | None, typer.Option(
             "--mirror/--additive", help="Make the repository equal to the remote, or only "
                                         "add to it (default: the remote's setting).")] = None,
         no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Sync from a remote: a new version (auto-published if the repository says so), or
    none when nothing changed."""
    api = connect()
    report(api, api.post(path("repositories", name, "sync"),
                         {"remote": remote, "mirror": mirror}),
           no_wait=no_wait, as_json=as_json, describe=describe_sync(name))
