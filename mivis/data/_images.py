"""Image decoding and resizing shared by every source.

Every image mivis decodes (data folders, run artifacts, uploads) is first checked against
MAX_PIXELS from its header alone, so a decompression bomb is refused before it is decoded.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

# The documented limit: 40 megapixels (e.g. 8000 x 5000), far above any face photo; larger images
# are refused unread (PIL only warns up to 89 MP and decodes them in full).
MAX_PIXELS = 40_000_000


class ImageRefused(ValueError):
    """An image that cannot be decoded, or is larger than MAX_PIXELS."""


def _check_size(img: Image.Image) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageRefused(f"image is {w} x {h} = {w * h / 1e6:.0f} megapixels, above the limit of "
                           f"{MAX_PIXELS / 1e6:.0f} megapixels; it is not decoded")


def open_image(src) -> Image.Image:
    """Decode an image (a path, bytes or a file object) after checking its size from the header.
    Any decoding problem is ImageRefused with a one-line reason."""
    if isinstance(src, (bytes, bytearray)):
        src = io.BytesIO(src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as img:
                _check_size(img)
                img.load()
                return img.copy()
    except ImageRefused:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageRefused(f"image is above the limit of {MAX_PIXELS / 1e6:.0f} megapixels; it is not decoded") from None
    except Exception as e:  # PIL raises many types for bad files
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise ImageRefused(f"not a readable image ({msg})") from None


def check_image(data: bytes) -> None:
    """Raise ImageRefused unless `data` decodes as an image of at most MAX_PIXELS."""
    open_image(data)


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
    return square_crop_resize(open_image(path), size, channels)
