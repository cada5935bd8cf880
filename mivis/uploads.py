"""Files a user uploads through the app, kept in the workspace's uploads/ folder only when they are used.

The file is named by its content (sha256), never by the name the browser sent, and lies inside the
workspace; an upload that the import refuses (a pickle, a truncated or NaN file, a wrong architecture)
is removed again, so a refused upload leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .names import inside
from .runs import Workspace

FOLDER = "uploads"


@contextmanager
def kept_if_used(ws: Workspace, raw: bytes, suffix: str = ".safetensors") -> Iterator[Path]:
    """The uploaded bytes as uploads/<sha256[:16]><suffix> for the block to import. When the block raises
    (a refused upload), the file is removed again, unless the same content was already there (an earlier
    import of the same file keeps its copy)."""
    folder = ws.path / FOLDER
    path = inside(ws.path, folder / f"{hashlib.sha256(raw).hexdigest()[:16]}{suffix}", "upload")
    folder.mkdir(parents=True, exist_ok=True)
    existed = path.is_file()
    if not existed:
        from .weights import atomic_path
        tmp = atomic_path(path)
        try:
            tmp.write_bytes(raw)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    try:
        yield path
    except BaseException:
        if not existed:
            path.unlink(missing_ok=True)
        raise
