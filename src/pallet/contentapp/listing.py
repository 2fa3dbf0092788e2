"""Directory listings as plain HTML: no scripts, styles or fonts from anywhere (Pallet runs
in networks without internet), links that `wget -r` and people can follow."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

_HEAD = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of {title}</title>'
         '</head>\n<body><h1>Index of {title}</h1>\n<pre>\n')


def render(title: str, entries: list[tuple[str, int | None]], *, parent: bool,
           truncated: bool) -> bytes:
    """`entries` are (name, size) with folders named 'x/' and sized None."""
    lines = [_HEAD.format(title=escape(title))]
    if parent:
        lines.append('<a href="../">../</a>\n')
    for name, size in entries:
        shown = f"{'-':>14}" if size is None else f"{size:>14}"
        lines.append(f'<a href="{escape(quote(name), quote=True)}">{escape(name)}</a> '
                     f"{shown}\n")
    lines.append("</pre>\n")
    if truncated:
        lines.append(f"<p>Only the first {len(entries)} entries are listed.</p>\n")
    lines.append("</body></html>\n")
    return "".join(lines).encode("utf-8")
