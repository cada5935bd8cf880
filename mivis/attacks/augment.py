"""On-device random views of images for attacks (PLG-MI, PPA) and PLG-MI prior training.

Random resized crop (square), horizontal flip, small rotation and brightness/contrast jitter,
all in one affine `grid_sample`, differentiable w.r.t. the images. Randomness comes from an
explicit generator so attacks are reproducible.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


VIEW_RANDOMS = 8  # uniform numbers one view uses per image


def view_randoms(n: int, gen: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Draw the randomness of n views up front (keeps compiled/graphed steps free of RNG calls)."""
    return torch.rand(n, VIEW_RANDOMS, generator=gen, device=device)


def random_view(x: torch.Tensor, gen: torch.Generator | None = None, scale: tuple[float, float] = (0.8, 1.0),
                max_rotate_deg: float = 5.0, flip: bool = True, jitter: float = 0.2,
                r: torch.Tensor | None = None) -> torch.Tensor:
    n, dev, dt = x.shape[0], x.device, x.dtype
    r = view_randoms(n, gen, dev) if r is None else r.to(dev, torch.float32)
    s = scale[0] + (scale[1] - scale[0]) * r[:, 0]            # crop side as a fraction of the image
    tx = (1 - s) * (2 * r[:, 1] - 1)                           # crop centre inside the image
    ty = (1 - s) * (2 * r[:, 2] - 1)
    ang = (2 * r[:, 3] - 1) * math.radians(max_rotate_deg)
    fl = torch.where(r[:, 4] < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=dev)
    cos, sin = torch.cos(ang) * s, torch.sin(ang) * s
    theta = torch.stack([torch.stack([cos * fl, -sin, tx], 1), torch.stack([sin * fl, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(dt), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if jitter > 0:
        j = r[:, 6:8].to(dt)
        b = ((2 * j[:, 0] - 1) * jitter)[:, None, None, None]
        c = (1 + (2 * j[:, 1] - 1) * jitter)[:, None, None, None]
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * c + mean + b
    return out
