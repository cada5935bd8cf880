"""Names that become file names, and the files mivis writes for a workspace.

A user-given name that mivis turns into a file name (a sweep's `name`, which names its summary
sweeps/<name>.json) must be one path component of a safe character set and length; anything else is
refused in one line before a file is touched. `inside` is the last check before a write: the path,
resolved (links followed), must lie inside the folder it is written for.
"""
from __future__ import annotations

import re
from pathlib import Path

from .params import ParamError

MAX_NAME = 100
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def file_name(name, what: str) -> str:
    """`name` itself when it can be used as one file name: 1..MAX_NAME characters of letters, digits, '.', '_'
    and '-', starting with a letter or digit (so never '..', a hidden file or a flag); ParamError otherwise."""
    if not isinstance(name, str):
        raise ParamError(f"{what}: {str(name)[:60]!r} is not a name (a string is needed)")
    shown = repr(name[:60]) + ("..." if len(name) > 60 else "")
    if not name:
        raise ParamError(f"{what}: empty; allowed: 1-{MAX_NAME} letters, digits, '.', '_' or '-'")
    if len(name) > MAX_NAME:
        raise ParamError(f"{what}: {shown} is {len(name)} characters long; allowed: at most {MAX_NAME}")
    if _SAFE.fullmatch(name) is None:
        if "/" in name or "\\" in name:
            why = "is a path, not one file name (no '/')"
        elif not name.isprintable():
            why = "has a control character (e.g. a NUL byte or a newline)"
        elif not re.match(r"[A-Za-z0-9]", name):
            why = "must start with a letter or digit"
        else:
            why = "has a character other than letters, digits, '.', '_' and '-'"
        raise ParamError(f"{what}: {shown} {why}; allowed: 1-{MAX_NAME} letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


def inside(root: Path, path: Path, what: str) -> Path:
    """`path` resolved, when it lies inside `root` (resolved too); ParamError naming `what` otherwise."""
    root_r, p = Path(root).resolve(), Path(path).resolve()
    if p != root_r and root_r not in p.parents:
        raise ParamError(f"{what}: {str(path)[:120]} resolves outside {root_r}; nothing was written")
    return p
