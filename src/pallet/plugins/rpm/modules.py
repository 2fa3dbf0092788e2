"""Modules (a yum repository's `modules` metadata, modules.yaml) as content units, each
document kept as upstream wrote it.

modules.yaml is a stream of YAML documents. Each becomes one unit holding the document's text
verbatim (from its `---` to its end; a missing `---` or `...` marker is added), so that the
published modules.yaml carries exactly what upstream wrote, whichever libmodulemd features it
uses. The parsed fields serve keys and references only:

- `rpm.module`: a `modulemd` document of version 2 (a module stream build); repository key
  name, stream, version, context, arch; it names the packages of `data.artifacts.rpms` by
  their NEVRA (exact references).
- `rpm.module_defaults`: a `modulemd-defaults` document; repository key the module's name.
- `rpm.module_document`: any other document (`modulemd-obsoletes`, `modulemd-translations`,
  ...), kept verbatim; its natural key is its text, so it replaces nothing (a mirror sync
  drops the old one).

A modulemd of another version (1, obsolete; 3 is a packager's input, never in a repository)
is refused, as is a document that is not a mapping with `document`, `version` and `data`.
PyYAML's safe loader reads it (C accelerated when built so), within the core's
`max_index_size` bound on the decompressed file; the document boundaries come from the
parser's own events, so a `---` inside a block scalar cannot split a document.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml
from pydantic import Field

from pallet.plugin import Invalid, Reference, UnitModel
from pallet.plugins.rpm.package import NEVRA as NEVRA_FIELDS, TYPE as PACKAGE, validated

MODULE, DEFAULTS, DOCUMENT = "rpm.module", "rpm.module_defaults", "rpm.module_document"
TYPES = (MODULE, DEFAULTS, DOCUMENT)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NEVRA = re.compile(r"(?P<name>[^\s/]+)-(?:(?P<epoch>\d+):)?(?P<version>[^\s/:-]+)"
                    r"-(?P<release>[^\s/:-]+)\.(?P<arch>[^\s/.:-]+)")
_DOCUMENT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_TEXT = Field(min_length=1)


class Module(UnitModel):
    name: str = Field(min_length=1, max_length=255)
    stream: str = Field(min_length=1, max_length=255)
    version: str = "0"  # an integer, kept as text for the repository key
    context: str = ""
    arch: str = ""
    artifacts: list[str] = []  # data.artifacts.rpms: NEVRAs "name-epoch:version-release.arch"
    text: str = _TEXT  # the document as upstream wrote it


class ModuleDefaults(UnitModel):
    module: str = Field(min_length=1, max_length=255)
    stream: str | None = None  # the default stream, if the document names one
    text: str = _TEXT


class ModuleDocument(UnitModel):
    document: str = Field(pattern=_DOCUMENT_NAME.pattern)  # e.g. "modulemd-obsoletes"
    version: str = ""
    module: str | None = None  # data.module, when the document names one
    text: str = _TEXT


MODELS: dict[str, type[UnitModel]] = {MODULE: Module, DEFAULTS: ModuleDefaults,
                                      DOCUMENT: ModuleDocument}
REPOSITORY_KEYS = {MODULE: ("name", "stream", "version", "context", "arch"),
                   DEFAULTS: ("module",), DOCUMENT: ()}


def no_files(unit: UnitModel) -> dict[str, str]:
    return {}  # dnf reads modules from the publication's modules.yaml


def nevra(text: str) -> dict[str, str] | None:
    """The name, epoch ("0" when none), version, release and arch of a NEVRA, or None."""
    match = _NEVRA.fullmatch(text)
    if match is None:
        return None
    return {**match.groupdict(), "epoch": match["epoch"] or "0"}


def module_references(module: Module) -> Iterable[Reference]:
    for artifact in module.artifacts:
        fields = nevra(artifact)
        if fields is not None:  # checked when read; a unit made by hand may hold others
            yield Reference(PACKAGE, {name: fields[name] for name in NEVRA_FIELDS})


# -- reading ------------------------------------------------------------------------------

def read(path: Path, where: str) -> Iterator[tuple[str, UnitModel]]:
    """(type, unit) of every document of the modules.yaml at `path` (`where` names it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"{where} is not UTF-8 text: {exc}") from None
    for number, document in enumerate(_documents(text, where), 1):
        try:
            data = yaml.load(document, Loader=_LOADER)
        except yaml.YAMLError as exc:
            raise Invalid(f"{where} is not YAML: document {number}: {exc}") from None
        yield _unit(data, _verbatim(document), f"document {number} of {where}")


def _documents(text: str, where: str) -> Iterator[str]:
    """The text of each document of the YAML stream `text`, by the parser's events. Aliases
    are refused: libmodulemd (dnf) cannot read them, and they are how a small YAML file
    expands into a huge one."""
    start = None
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent):
                raise Invalid(f"{where} uses a YAML alias (*{str(event.anchor)[:50]}, line "
                              f"{event.start_mark.line + 1}), which dnf cannot read")
            if isinstance(event, yaml.DocumentStartEvent):
                start = event.start_mark.index
            elif isinstance(event, yaml.DocumentEndEvent):
                yield text[start:event.end_mark.index]
    except yaml.YAMLError as exc:
        raise Invalid(f"{where} is not YAML: {exc}") from None


def _verbatim(document: str) -> str:
    """The document with its `---` and `...` markers, whether or not upstream wrote them."""
    document = document.strip("\n")
    if not document.startswith(("---", "%")):
        document = "---\n" + document
    if not document.endswith("\n..."):
        document += "\n..."
    return document + "\n"


def _unit(data: Any, text: str, what: str) -> tuple[str, UnitModel]:
    if not isinstance(data, dict) or not isinstance(data.get("document"), str) \
            or not isinstance(data.get("data"), dict):
        raise Invalid(f"{what} is not a modulemd document (a mapping with document, version "
                      "and data)")
    kind, body, version = data["document"], data["data"], data.get("version")
    if kind == "modulemd":
        if version != 2:
            raise Invalid(f"{what} is a modulemd of version {str(version)[:20]}; Pallet "
                          "reads version 2, the one repositories carry")
        return MODULE, _module(body, text, what)
    if kind == "modulemd-defaults":
        module = _text(body, "module", what, required=True)
        return DEFAULTS, validated(ModuleDefaults, {
            "module": module, "stream": _text(body, "stream", what), "text": text},
            f"modulemd-defaults of {module[:100]!r} in {what}")
    if not _DOCUMENT_NAME.fullmatch(kind):
        raise Invalid(f"{what} is a document of unknown kind {kind[:100]!r}")
    module = body.get("module")
    return DOCUMENT, validated(ModuleDocument, {
        "document": kind, "version": _scalar(version), "text": text,
        "module": module if isinstance(module, str) else None}, f"{kind} in {what}")


def _module(body: dict, text: str, what: str) -> Module:
    name = _text(body, "name", what, required=True)
    stream = _text(body, "stream", what, required=True)
    what = f"module {name[:100]}:{stream[:100]} in {what}"
    artifacts = (body.get("artifacts") or {})
    rpms = artifacts.get("rpms", []) if isinstance(artifacts, dict) else None
    if not isinstance(rpms, list) or not all(isinstance(r, str) for r in rpms):
        raise Invalid(f"{what}: data.artifacts.rpms is not a list of NEVRAs")
    wrong = [r for r in rpms if nevra(r) is None]
    if wrong:
        raise Invalid(f"{what}: data.artifacts.rpms holds {wrong[0][:200]!r}, which is not a "
                      "NEVRA (name-epoch:version-release.arch)")
    return validated(Module, {
        "name": name, "stream": stream, "version": _scalar(body.get("version", 0)),
        "context": _text(body, "context", what) or "", "arch": _text(body, "arch", what) or "",
        "artifacts": rpms, "text": text}, what)


def _text(body: dict, key: str, what: str, *, required: bool = False) -> str | None:
    """A name-like value of the document's data: text, or a number YAML read as one."""
    value = body.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise Invalid(f"{what} has no {key}" if value in (None, "") else
                      f"{what}: data.{key} is not text")
    return str(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
        raise Invalid(f"a module document's version is {str(value)[:50]!r}, not a number")
    return "" if value is None else str(value)


# -- writing ------------------------------------------------------------------------------

def modules_yaml(units: Iterable[tuple[str, dict[str, Any]]]) -> str:
    """modules.yaml of the (type, fields) of module units: every document's text, modules
    first (by name, stream, version, context, arch), then defaults, then the others."""
    def order(unit: tuple[str, dict[str, Any]]):
        kind, fields = unit
        if kind == MODULE:
            key = tuple(fields[name] for name in REPOSITORY_KEYS[MODULE])
        elif kind == DEFAULTS:
            key = (fields["module"],)
        else:
            key = (fields["document"], fields.get("module") or "", fields["text"])
        return TYPES.index(kind), key
    return "".join(fields["text"] for _, fields in sorted(units, key=order))
