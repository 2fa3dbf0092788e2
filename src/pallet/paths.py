"""Validation of relative paths that come from outside (API bodies, indexes, archives)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Sequence

from pallet.errors import Invalid, NotFound

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


def os_path(path: Path | str | None, *, what: str = "path") -> Path:
    """`path` as a Path the file system can be asked about, else Invalid: no NUL byte
    (the OS cannot hold one) and nothing that does not encode (a lone surrogate from a JSON
    escape), both of which make Python raise instead of answering."""
    if path is None or str(path) == "":
        raise Invalid(f"{what} is missing: give an absolute path", details={"field": what})
    text = str(path)
    shown = text[:200].encode("utf-8", "backslashreplace").decode()
    if "\x00" in text:
        raise Invalid(f"{what} {shown!r} holds a NUL byte, which no path can hold",
                      details={"field": what})
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        raise Invalid(f"{what} {shown!r} holds text that is not valid Unicode",
                      details={"field": what}) from None
    return Path(text)


def allowed_path(path: Path | str, allowed_dirs: Sequence[Path], *, setting: str) -> Path:
    """`path` with every link resolved, if it lies inside one of `allowed_dirs` (resolved
    too); else Invalid naming the setting that lists them. Every path a request names
    reaches the file system through here."""
    path = os_path(path)
    if not path.is_absolute():
        raise Invalid(f"{path} is not an absolute path", details={"path": str(path)})
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop (RuntimeError on Python 3.11)
        raise Invalid(f"path {str(path)[:200]!r} cannot be resolved: "
                      f"{getattr(exc, 'strerror', None) or exc}",
                      details={"path": str(path)}) from None
    for allowed in allowed_dirs:
        base = Path(allowed).resolve()
        if resolved == base or resolved.is_relative_to(base):
            return resolved
    where = ", ".join(str(d) for d in allowed_dirs) or "none are configured"
    kind = setting.split("_")[1]  # allowed_import_dirs: "import"
    raise Invalid(f"{path} is not inside an allowed {kind} directory ({setting}: {where}); "
                  "links are followed before this check", details={"path": str(path)})


def regular_file(path: Path, *, label: str | None = None) -> Path:
    """`path` if it is a regular file; else NotFound or Invalid. Checked before opening:
    opening a FIFO blocks until a writer comes, and a device has no end."""
    label = label or str(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise NotFound(f"there is no file at {label}", details={"path": label}) from None
    except OSError as exc:
        raise Invalid(f"cannot read {label}: {exc.strerror}", details={"path": label}) from None
    if not stat.S_ISREG(mode):
        raise Invalid(f"{label} is not a regular file", details={"path": label})
    return path
