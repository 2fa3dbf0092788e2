"""Roles and the permissions they grant. A new role (exporter, importer…) is one more line."""

from __future__ import annotations

READ, WRITE, ADMIN = "read", "write", "admin"

ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset({READ, WRITE, ADMIN}),
    "viewer": frozenset({READ}),
}


def permissions_of(roles: list[str]) -> frozenset[str]:
    granted: set[str] = set()
    for role in roles:
        granted |= ROLES.get(role, frozenset())
    return frozenset(granted)
