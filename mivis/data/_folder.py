"""Bring-your-own data: a folder with one sub-folder of images per identity.

Data folders and identity lists are read only from allowed data roots: the workspace and the
folders in $MIVIS_DATA_ROOTS (separated by os.pathsep), by default ~/mivis-data. A path outside
them is refused before anything is looked at, with the same message whether or not it exists.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..paths import DEFAULT_WORKSPACE, ENV_VAR
from ..progress import NULL, Reporter
from ._errors import DataError

ENV_DATA_ROOTS = "MIVIS_DATA_ROOTS"
DEFAULT_DATA_ROOT = "~/mivis-data"
MAX_LIST_BYTES = 16 * 2**20  # an identity list larger than this is refused unread

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp", ".gif"}


def folder_identities(root: str | Path, size: int, channels: int, problems: list[str],
                      reporter: Reporter = NULL):
    """Identities with at least one readable image, their rows in the on-disk cache, and the cache.

    Unreadable files and empty identities are reported in `problems`, not fatal."""
    from ._cache import load_folder
    root = allowed_path(root, "data_dir")
    cached = load_folder(root, size, channels, reporter)
    problems.extend(cached.problems)
    if not cached.names:
        raise DataError(f"no usable identity in {Path(root).expanduser()}: expected one sub-folder per identity, "
                        "each with at least 1 readable image")
    return cached.names, cached.rows, cached


def data_roots() -> list[Path]:
    """The folders data may be read from: the workspace, then $MIVIS_DATA_ROOTS (default ~/mivis-data)."""
    raw = os.environ.get(ENV_DATA_ROOTS)
    extra = [r for r in (raw.split(os.pathsep) if raw is not None else [DEFAULT_DATA_ROOT]) if r.strip()]
    ws = os.environ.get(ENV_VAR) or str(DEFAULT_WORKSPACE)
    out: list[Path] = []
    for r in [ws, *extra]:
        p = Path(r).expanduser().resolve()
        if p not in out:
            out.append(p)
    return out


def allowed_path(path: str | Path, what: str) -> Path:
    """`path` resolved (symlinks followed), if inside an allowed data root; else DataError. Nothing
    about the path is looked up before the check, and the message is the same whether it exists."""
    roots = data_roots()
    try:
        p = Path(str(path)).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        p = None
    if p is None or not any(p == r or r in p.parents for r in roots):
        raise DataError(f"{what} must be inside an allowed data root ({', '.join(str(r) for r in roots)}); "
                        f"put the data there or add its folder to ${ENV_DATA_ROOTS} (separated by "
                        f"{os.pathsep!r}) before starting mivis")
    return p


def read_identity_list(path: str | Path) -> list[str]:
    """Identity names, one per line (blank lines and # comments skipped); a UTF-8 text file."""
    p = allowed_path(path, "an identity list")
    try:
        if p.stat().st_size > MAX_LIST_BYTES:
            raise DataError(f"identity list {p} is larger than {MAX_LIST_BYTES // 2**20} MiB; not an identity list")
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise DataError(f"cannot read identity list {p}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise DataError(f"identity list {p} is not a UTF-8 text file (one identity name per line)") from None
    if "\x00" in text:
        raise DataError(f"identity list {p} is binary, not a text file (one identity name per line)")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
