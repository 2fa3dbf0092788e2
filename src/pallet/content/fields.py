"""Type fields the database indexes: what a content type declares in `indexes` (a package's
name and arch) becomes a partial index on `content (<field>, <field>…) WHERE type = '<type>'`
over the unit's JSON, so a look-up by those fields among millions of units is an index
search, not a JSON scan.

The indexes are made from the installed plugins whenever the schema is upgraded (they are not
migrations: a plugin installed later brings its own). A query uses them through
`fields_match`, which renders the very expressions the index was made on, and the type as a
literal (a partial index is only chosen for a condition the planner can see is its own).
"""

from __future__ import annotations

import hashlib
import re

from typing import Mapping

from sqlalchemy import String, and_, literal_column, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from pallet.db.engine import Database
from pallet.plugins import Registry

INDEX_PREFIX = "ix_content_field_"
_FIELD = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class unit_field(FunctionElement):
    """SQL: the text value of a unit's field `name` (content.data's member)."""

    type = String()
    inherit_cache = True
    name = "unit_field"
    # The field is part of the statement's cache key: two fields are two statements.
    _traverse_internals = [("field", InternalTraversal.dp_string)]

    def __init__(self, field: str):
        self.field = _checked(field)
        super().__init__()


@compiles(unit_field, "sqlite")
def _sqlite(element: unit_field, compiler, **kw) -> str:
    return f"json_extract(content.data, '$.{element.field}')"


@compiles(unit_field, "postgresql")
def _postgresql(element: unit_field, compiler, **kw) -> str:
    return f"(content.data ->> '{element.field}')"


def fields_match(content_type: str, fields: Mapping[str, str]):
    """SQL condition: the unit is of `content_type` and has these field values."""
    from pallet.content.models import Content

    quoted = "'" + content_type.replace("'", "''") + "'"
    return and_(Content.type == literal_column(quoted),
                *(unit_field(name) == value for name, value in fields.items()))


def _checked(field: str) -> str:
    """Field names are written into SQL (an index expression cannot take a parameter)."""
    if not _FIELD.fullmatch(field):
        raise ValueError(f"an indexed field name must be a lower-case identifier: {field!r}")
    return field


def index_name(content_type: str, fields: tuple[str, ...]) -> str:
    """Short enough for PostgreSQL's 63 characters, the same for the same declaration."""
    label = hashlib.sha256(repr((content_type, fields)).encode()).hexdigest()[:16]
    return f"{INDEX_PREFIX}{label}"


def ensure_field_indexes(db: Database, plugins: Registry) -> list[str]:
    """Create the indexes the plugins' content types declare, where missing; their names."""
    postgres = db.engine.dialect.name == "postgresql"
    made = []
    with db.engine.begin() as connection:
        for content_type in plugins.content_types.values():
            for fields in content_type.indexes:
                parts = [(f"(data ->> '{_checked(f)}')" if postgres
                          else f"json_extract(data, '$.{_checked(f)}')") for f in fields]
                name = index_name(content_type.name, fields)
                type_name = content_type.name.replace("'", "''")
                connection.execute(text(
                    f"CREATE INDEX IF NOT EXISTS {name} ON content ({', '.join(parts)}) "
                    f"WHERE type = '{type_name}'"))
                made.append(name)
    return made
