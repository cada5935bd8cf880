"""Image grids as PNG bytes (sample grids of priors, reconstructions next to real faces)."""
from __future__ import annotations

import io

import numpy as np
import torch


def grid_array(x: torch.Tensor, ncol: int, pad: int = 2, scale: int = 1) -> np.ndarray:
    """[-1, 1] images (N, C, H, W) -> one uint8 (H', W', C) array, row-major, white padding."""
    from .data import to_uint8
    imgs = to_uint8(x)  # (N, H, W, C)
    if scale > 1:
        imgs = imgs.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = imgs.shape
    ncol = max(1, min(ncol, n))
    nrow = (n + ncol - 1) // ncol
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, ncol)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = imgs[i]
    return out


def grid_png(x: torch.Tensor, ncol: int, pad: int = 2, scale: int = 1) -> bytes:
    from PIL import Image
    arr = grid_array(x, ncol, pad, scale)
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
