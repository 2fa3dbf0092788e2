"""Roles and the permissions they grant. A new role (exporter, importer…) is one more line."""

from __future__ import annotations

READ, WRITE, ADMIN = "read", "write", "admin"
# Moving content across servers is a permission of its own, apart from writing and admin.
EXPORT, IMPORT = "export", "import"

ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset({READ, WRITE, ADMIN, EXPORT, IMPORT}),
    "viewer": frozenset({READ}),
    "exporter": frozenset({READ, EXPORT}),
    "importer": frozenset({READ, IMPORT}),
}


def permissions_of(roles: list[str]) -> frozenset[str]:
    granted: set[str] = set()
    for role in roles:
        granted |= ROLES.get(role, frozenset())
    return frozenset(granted)
