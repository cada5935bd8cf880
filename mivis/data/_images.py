"""Image decoding and resizing shared by every source."""
from __future__ import annotations

import numpy as np
from PIL import Image


def centre_square(img: Image.Image, side: int | None = None) -> Image.Image:
    """The centred side x side square (default and at most: the shorter edge)."""
    w, h = img.size
    s = min(w, h) if side is None else min(side, w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))


def square_crop_resize(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """Centre square crop, resize to size x size, return uint8 (channels, size, size)."""
    img = img.convert("L" if channels == 1 else "RGB")
    img = centre_square(img).resize((size, size), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1).copy()


def read_image(path, size: int, channels: int) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        return square_crop_resize(img, size, channels)
