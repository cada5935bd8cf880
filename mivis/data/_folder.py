"""Bring-your-own data: a folder with one sub-folder of images per identity."""
from __future__ import annotations

from pathlib import Path

from ..progress import NULL, Reporter

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp", ".gif"}


def folder_identities(root: str | Path, size: int, channels: int, problems: list[str],
                      reporter: Reporter = NULL):
    """Identities with at least one readable image, their rows in the on-disk cache, and the cache.

    Unreadable files and empty identities are reported in `problems`, not fatal."""
    from ._cache import load_folder
    from ._split import DataError
    cached = load_folder(root, size, channels, reporter)
    problems.extend(cached.problems)
    if not cached.names:
        raise DataError(f"no usable identity in {Path(root).expanduser()}: expected one sub-folder per identity, "
                        "each with at least 1 readable image")
    return cached.names, cached.rows, cached


def read_identity_list(path: str | Path) -> list[str]:
    from ._split import DataError
    p = Path(path).expanduser()
    try:
        return [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    except OSError as e:
        raise DataError(f"cannot read identity list {p}: {e}") from None
