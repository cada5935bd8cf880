"""Differentiable augmentation (Zhao et al. 2020) for GAN training on a few hundred images.

The same random colour, translation and cutout is applied to real and fake batches before the
discriminator sees them, so it cannot memorise the 200 public faces; gradients flow to G.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def _rand(gen: torch.Generator | None, *shape, device) -> torch.Tensor:
    return torch.rand(*shape, generator=gen, device=device)


def color(x: torch.Tensor, gen=None) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    x = x + (_rand(gen, n, 1, 1, 1, device=dev) - 0.5)                       # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(gen, n, 1, 1, 1, device=dev) * 2) + mean         # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(gen, n, 1, 1, 1, device=dev) + 0.5) + mean    # contrast


def translation(x: torch.Tensor, gen=None, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = x.device
    tx = (_rand(gen, n, device=dev) * (2 * sh + 1)).long() - sh
    ty = (_rand(gen, n, device=dev) * (2 * sw + 1)).long() - sw
    gy = (torch.arange(h, device=dev)[None, :] + tx[:, None]).clamp(-1, h)  # (n, h)
    gx = (torch.arange(w, device=dev)[None, :] + ty[:, None]).clamp(-1, w)  # (n, w)
    padded = F.pad(x, (1, 1, 1, 1))
    idx_y = (gy + 1)[:, None, :, None].expand(n, x.shape[1], h, w + 2)
    rows = padded.gather(2, idx_y)
    idx_x = (gx + 1)[:, None, None, :].expand(n, x.shape[1], h, w)
    return rows.gather(3, idx_x)


def cutout(x: torch.Tensor, gen=None, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = x.device
    oy = (_rand(gen, n, device=dev) * (h + 1 - ch % 2)).long()
    ox = (_rand(gen, n, device=dev) * (w + 1 - cw % 2)).long()
    yy = torch.arange(h, device=dev)[None, :, None]
    xx = torch.arange(w, device=dev)[None, None, :]
    top, left = (oy - ch // 2)[:, None, None], (ox - cw // 2)[:, None, None]
    inside = (yy >= top) & (yy < top + ch) & (xx >= left) & (xx < left + cw)
    return x * (~inside)[:, None].to(x.dtype)


_FNS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout",
                 gen: torch.Generator | None = None) -> torch.Tensor:
    for name in [p for p in policy.split(",") if p]:
        x = _FNS[name](x, gen)
    return x
