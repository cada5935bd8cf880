"""Batched, on-device image augmentation for face classifiers (no per-image Python loops)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

LEVELS = ("none", "light", "standard")


def augment(x: torch.Tensor, level: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random shift/scale/rotation, horizontal flip and brightness/contrast jitter, images in [-1, 1]."""
    if level == "none":
        return x
    n = x.shape[0]
    strong = level == "standard"
    rnd = lambda *s: torch.rand(*s, generator=generator, device="cpu").to(x.device)
    shift = (rnd(n, 2) * 2 - 1) * (0.12 if strong else 0.06)
    scale = 1 + (rnd(n) * 2 - 1) * (0.1 if strong else 0.05)
    angle = (rnd(n) * 2 - 1) * (0.17 if strong else 0.0)
    flip = torch.where(rnd(n) < 0.5, -1.0, 1.0).to(x.device)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    if strong:
        b = (rnd(n, 1, 1, 1) * 2 - 1) * 0.2
        c = 1 + (rnd(n, 1, 1, 1) * 2 - 1) * 0.2
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * c + mean + b).clamp(-1, 1)
    return out


def augment_to(x: torch.Tensor, level: str, generator: torch.Generator | None, device: torch.device,
               on_device: bool = False) -> torch.Tensor:
    """`augment` a training batch and place it on `device`. In-memory batches are augmented where they
    are (their numbers stay as they were); streamed batches, read ahead by loader workers, on the device."""
    from .device import to_device
    if on_device:
        x = to_device(x, device)
    return to_device(augment(x, level, generator), device)
