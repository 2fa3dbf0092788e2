"""Comps (a yum repository's `group` metadata, comps.xml) as content units: groups,
categories, environments and the repository's langpacks, with every field dnf reads.

A comps file is read with libcomps, the library dnf itself reads it with, and written back
with it, so dnf sees the same groups in a publication as upstream. Before libcomps reads it,
the standard library's expat reads it once as a stream: a file that is not well-formed XML is
refused with expat's line and column (libcomps only says "Fatal parser error"), and so is any
DTD internal subset or entity declaration (`<!ENTITY`): comps never needs one, and entities
are how XML bombs are made. The usual `<!DOCTYPE comps PUBLIC ... "comps.dtd">` is fine.

Each unit's natural key is every field (a group changed upstream is another unit); its
repository key is its id, or a constant for the one langpacks unit, so a resync replaces the
old one. A group names its packages by name only (`exact=False`): comps lists names, and a
group may list packages a repository does not hold.
"""

from __future__ import annotations

import xml.parsers.expat
from pathlib import Path
from typing import Annotated, Any, Iterable, Iterator, Literal

import libcomps
from pydantic import ConfigDict, Field
from typing_extensions import NotRequired, TypedDict

from pallet.plugin import Invalid, Reference, UnitModel
from pallet.plugins.rpm.package import TYPE as PACKAGE, validated

GROUP, CATEGORY, ENVIRONMENT, LANGPACKS = ("rpm.group", "rpm.category", "rpm.environment",
                                           "rpm.langpacks")
TYPES = (GROUP, CATEGORY, ENVIRONMENT, LANGPACKS)
PACKAGE_TYPES = {libcomps.PACKAGE_TYPE_MANDATORY: "mandatory",
                 libcomps.PACKAGE_TYPE_DEFAULT: "default",
                 libcomps.PACKAGE_TYPE_OPTIONAL: "optional",
                 libcomps.PACKAGE_TYPE_CONDITIONAL: "conditional"}
_LIBCOMPS_TYPES = {name: number for number, name in PACKAGE_TYPES.items()}
_ID = Field(min_length=1, max_length=1000)


# Parts of a unit are TypedDicts, kept as plain dicts and lists: what the unit is stored as
# (its JSON) is then what its fields are in Python too.
class GroupPackage(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    name: Annotated[str, _ID]
    type: Literal["mandatory", "default", "optional", "conditional"]
    requires: NotRequired[str | None]  # a conditional package's condition: a package name
    basearchonly: NotRequired[bool | None]


class GroupOption(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    id: Annotated[str, _ID]
    default: bool


class _Named(UnitModel):
    id: str = _ID
    name: str = ""
    description: str = ""
    name_by_lang: dict[str, str] = {}
    desc_by_lang: dict[str, str] = {}
    display_order: int | None = None


class Group(_Named):
    default: bool = False
    uservisible: bool = True
    biarchonly: bool = False
    langonly: str | None = None
    packages: list[GroupPackage] = []


class Category(_Named):
    group_ids: list[str] = []


class Environment(_Named):
    group_ids: list[str] = []
    option_ids: list[GroupOption] = []


class Langpacks(UnitModel):
    kind: Literal["langpacks"] = "langpacks"  # the repository key: one unit per repository
    matches: list[tuple[str, str]] = []  # (name, install), e.g. ("hunspell", "hunspell-%s")


MODELS: dict[str, type[UnitModel]] = {GROUP: Group, CATEGORY: Category,
                                      ENVIRONMENT: Environment, LANGPACKS: Langpacks}
REPOSITORY_KEYS = {GROUP: ("id",), CATEGORY: ("id",), ENVIRONMENT: ("id",),
                   LANGPACKS: ("kind",)}


def no_files(unit: UnitModel) -> dict[str, str]:
    return {}  # dnf reads comps from the publication's comps.xml


def group_references(group: Group) -> Iterable[Reference]:
    for name in sorted({package["name"] for package in group.packages}):
        yield Reference(PACKAGE, {"name": name}, exact=False)


# -- reading ------------------------------------------------------------------------------

def read(path: Path, where: str) -> Iterator[tuple[str, UnitModel]]:
    """(type, unit) of every group, category, environment and the langpacks in the comps
    file at `path` (`where` names it in errors)."""
    _check_xml(path, where)
    comps = libcomps.Comps()
    try:
        comps.fromxml_f(str(path))
    except (libcomps.ParserError, ValueError, TypeError) as exc:
        raise Invalid(f"{where} is not a comps file libcomps can read ({exc})") from None
    for kind, items, fields_of in ((GROUP, comps.groups, _group),
                                   (CATEGORY, comps.categories, _category),
                                   (ENVIRONMENT, comps.environments, _environment)):
        for item in items:
            if not item.id:
                raise Invalid(f"{where} has a {kind.removeprefix('rpm.')} without an id")
            yield kind, validated(MODELS[kind], fields_of(item),
                                  f"{kind.removeprefix('rpm.')} {item.id[:100]!r} in {where}")
    matches = sorted(dict(comps.langpacks).items())
    if matches:
        yield LANGPACKS, validated(Langpacks, {"matches": matches}, f"langpacks in {where}")


def _check_xml(path: Path, where: str) -> None:
    """Refuse what is not well-formed XML, and any DTD internal subset or entity."""
    def doctype(name, system_id, public_id, has_internal_subset):
        if has_internal_subset:
            raise Invalid(f"{where} declares a DTD internal subset (<!DOCTYPE ... [ ]>); "
                          "comps files with DTD or entity declarations (<!ENTITY) are "
                          "refused")

    def entity(name, *rest):
        raise Invalid(f"{where} declares an entity ({str(name)[:100]!r}); comps files with "
                      "entity declarations (<!ENTITY) are refused")

    parser = xml.parsers.expat.ParserCreate()
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    try:
        with open(path, "rb") as stream:
            parser.ParseFile(stream)
    except xml.parsers.expat.ExpatError as exc:
        raise Invalid(f"{where} is not well-formed XML: {exc}") from None


def _named(item) -> dict[str, Any]:
    return {"id": item.id, "name": item.name or "", "description": item.desc or "",
            "name_by_lang": dict(item.name_by_lang), "desc_by_lang": dict(item.desc_by_lang),
            "display_order": item.display_order}


def _group(group) -> dict[str, Any]:
    return _named(group) | {
        "default": bool(group.default), "uservisible": group.uservisible is not False,
        "biarchonly": bool(group.biarchonly), "langonly": group.lang_only,
        "packages": [{"name": p.name, "type": PACKAGE_TYPES.get(p.type, "default"),
                      "requires": p.requires, "basearchonly": p.basearchonly}
                     for p in group.packages]}


def _category(category) -> dict[str, Any]:
    return _named(category) | {"group_ids": [g.name for g in category.group_ids]}


def _environment(environment) -> dict[str, Any]:
    return _named(environment) | {
        "group_ids": [g.name for g in environment.group_ids],
        "option_ids": [{"id": o.name, "default": bool(o.default)}
                       for o in environment.option_ids]}


# -- writing ------------------------------------------------------------------------------

def comps_xml(units: Iterable[tuple[str, dict[str, Any]]]) -> str:
    """comps.xml of the (type, fields) of comps units, as libcomps writes it (sorted by id)."""
    comps = libcomps.Comps()
    for kind, fields in sorted(units, key=lambda unit: (unit[0], unit[1].get("id", ""))):
        if kind == GROUP:
            comps.groups.append(_to_group(fields))
        elif kind == CATEGORY:
            comps.categories.append(_to_category(fields))
        elif kind == ENVIRONMENT:
            comps.environments.append(_to_environment(fields))
        elif kind == LANGPACKS:
            for name, install in fields.get("matches", ()):
                comps.langpacks[name] = install
    return comps.xml_str(xml_options=libcomps.get_xml_default_options())


def _fill(item, fields: dict[str, Any]):
    item.id, item.name, item.desc = fields["id"], fields.get("name", ""), \
        fields.get("description", "")
    for lang, text in fields.get("name_by_lang", {}).items():
        item.name_by_lang[lang] = text
    for lang, text in fields.get("desc_by_lang", {}).items():
        item.desc_by_lang[lang] = text
    if fields.get("display_order") is not None:
        item.display_order = fields["display_order"]
    return item


def _to_group(fields: dict[str, Any]):
    group = _fill(libcomps.Group(), fields)
    group.default, group.uservisible = fields.get("default", False), \
        fields.get("uservisible", True)
    group.biarchonly = fields.get("biarchonly", False)
    if fields.get("langonly"):
        group.lang_only = fields["langonly"]
    for package in fields.get("packages", ()):
        entry = libcomps.Package(name=package["name"],
                                 type=_LIBCOMPS_TYPES[package.get("type", "default")])
        if package.get("requires"):
            entry.requires = package["requires"]
        if package.get("basearchonly") is not None:
            entry.basearchonly = package["basearchonly"]
        group.packages.append(entry)
    return group


def _to_category(fields: dict[str, Any]):
    category = _fill(libcomps.Category(), fields)
    for group_id in fields.get("group_ids", ()):
        category.group_ids.append(libcomps.GroupId(name=group_id))
    return category


def _to_environment(fields: dict[str, Any]):
    environment = _fill(libcomps.Environment(), fields)
    for group_id in fields.get("group_ids", ()):
        environment.group_ids.append(libcomps.GroupId(name=group_id))
    for option in fields.get("option_ids", ()):
        environment.option_ids.append(libcomps.GroupId(name=option["id"],
                                                       default=option.get("default", False)))
    return environment
