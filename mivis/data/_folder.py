"""Bring-your-own data: a folder with one sub-folder of images per identity."""
from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp", ".gif"}


def folder_identities(root: str | Path, size: int, channels: int, min_images: int,
                      problems: list[str]) -> tuple[list[str], list[np.ndarray]]:
    """Read every identity folder; report unreadable files and thin identities in `problems`."""
    from ._images import read_image
    from ._split import DataError
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder")
    names, per = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        faces = []
        for f in sorted(sub.iterdir()):
            if not f.is_file() or f.name.startswith("."):
                continue
            try:
                faces.append(read_image(f, size, channels))
            except Exception as e:  # PIL raises many types for bad files
                problems.append(f"skipped unreadable image {f}: {type(e).__name__}: {e}")
        if len(faces) < min_images:
            problems.append(f"identity {sub.name!r} has {len(faces)} usable image(s), "
                            f"fewer than the {min_images} needed; left out")
            continue
        names.append(sub.name)
        per.append(np.stack(faces))
    if not names:
        raise DataError(f"no usable identity in {root}: expected one sub-folder per identity, "
                        f"each with at least {min_images} readable images")
    return names, per


def read_identity_list(path: str | Path) -> list[str]:
    from ._split import DataError
    p = Path(path).expanduser()
    try:
        return [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    except OSError as e:
        raise DataError(f"cannot read identity list {p}: {e}") from None
