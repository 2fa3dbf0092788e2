"""Loading content-type plugins from their entry points, once, at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from pallet.errors import Invalid
from pallet.plugin import API_VERSION, ENTRY_POINT_GROUP, ContentType, Plugin, RepositoryType

log = logging.getLogger(__name__)


@dataclass
class Registry:
    plugins: dict[str, Plugin] = field(default_factory=dict)
    content_types: dict[str, ContentType] = field(default_factory=dict)
    repository_types: dict[str, RepositoryType] = field(default_factory=dict)

    def add(self, plugin: Plugin) -> None:
        if plugin.name in self.plugins:
            raise ValueError(f"plugin {plugin.name!r} is registered twice")
        self.plugins[plugin.name] = plugin
        for content_type in plugin.content_types:
            self._claim(self.content_types, content_type.name, content_type, "content type")
        for repository_type in plugin.repository_types:
            self._claim(self.repository_types, repository_type.name, repository_type,
                        "repository type")

    @staticmethod
    def _claim(table: dict, name: str, value: object, what: str) -> None:
        if name in table:
            raise ValueError(f"{what} {name!r} is registered by two plugins")
        table[name] = value

    def content_type(self, name: str) -> ContentType:
        try:
            return self.content_types[name]
        except KeyError:
            raise Invalid(f"unknown content type {name!r}",
                          details={"known": sorted(self.content_types)}) from None

    def repository_type(self, name: str) -> RepositoryType:
        try:
            return self.repository_types[name]
        except KeyError:
            raise Invalid(f"unknown repository type {name!r}",
                          details={"known": sorted(self.repository_types)}) from None


def load_plugins() -> Registry:
    """Every plugin installed in the entry-point group, in a fresh registry."""
    registry = Registry()
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        plugin = entry_point.load()
        if not isinstance(plugin, Plugin) or plugin.api_version != API_VERSION:
            raise ValueError(f"entry point {entry_point.name!r} is not a pallet.plugin.Plugin")
        registry.add(plugin)
        log.debug("loaded plugin %s", plugin.name)
    return registry
