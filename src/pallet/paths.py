"""Validation of relative paths that come from outside (API bodies, indexes, archives)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from pallet.errors import Invalid

MAX_PATH_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255
# Unicode's control characters (category Cc) and lone surrogates (Cs), as one character
# class: a regular expression checks a path at C speed, a loop over its characters did not.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def validate_relative_path(path: str, *, what: str = "relative_path") -> str:
    """Return `path` if it is a safe relative POSIX path, else raise Invalid saying why."""
    def refuse(reason: str) -> Invalid:
        return Invalid(f"{what} {path[:100]!r} is not allowed: {reason}",
                       details={"field": what})

    if not isinstance(path, str) or not path:
        raise refuse("it is empty")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_LENGTH:
        raise refuse(f"it is longer than {MAX_PATH_LENGTH} bytes")
    if _CONTROL.search(path):
        raise refuse("it contains NUL or control characters")
    if path.startswith("/") or "\\" in path:
        raise refuse("it must be a relative path with '/' separators")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise refuse("it has an empty, '.' or '..' segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_LENGTH:
            raise refuse(f"a segment is longer than {MAX_SEGMENT_LENGTH} bytes")
    return path


def allowed_path(path: Path | str, allowed_dirs: Sequence[Path], *, setting: str) -> Path:
    """`path` with every link resolved, if it lies inside one of `allowed_dirs` (resolved
    too); else Invalid naming the setting that lists them."""
    path = Path(path)
    if not path.is_absolute():
        raise Invalid(f"{path} is not an absolute path", details={"path": str(path)})
    resolved = path.resolve()
    for allowed in allowed_dirs:
        base = Path(allowed).resolve()
        if resolved == base or resolved.is_relative_to(base):
            return resolved
    where = ", ".join(str(d) for d in allowed_dirs) or "none are configured"
    kind = setting.split("_")[1]  # allowed_import_dirs: "import"
    raise Invalid(f"{path} is not inside an allowed {kind} directory ({setting}: {where}); "
                  "links are followed before this check", details={"path": str(path)})
