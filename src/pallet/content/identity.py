"""A unit's identity: the sha256 of its canonical (type, natural key), the same on every server."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def identity_digest(content_type: str, natural_key: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json([content_type, dict(natural_key)])).hexdigest()


def unit_identity(content_type: str, key_fields: tuple[str, ...],
                  data: Mapping[str, Any]) -> str:
    """The identity of a unit from its fields as JSON (`model_dump(mode="json")`), so a
    field that is a nested structure hashes as the JSON it is stored as."""
    return identity_digest(content_type, {name: data[name] for name in key_fields})


def repository_key_digest(content_type: str, fields: Mapping[str, Any],
                          key_fields: tuple[str, ...]) -> str:
    """The digest of a unit's repository key: equal for units that replace each other in a
    version. For a type whose repository key is its natural key, this is its identity."""
    return identity_digest(content_type, {name: fields[name] for name in key_fields})
