"""Shipped priors (and judges) for targets of another image size or channel count, adapted and labelled.

The shipped GAN priors are grayscale (ORL) at 32 and 64 px. A target that takes 3-channel images, or another
size, can still be attacked with them: the generator's output is converted to the target's input (grayscale
replicated to 3 channels, or RGB averaged to gray; resized bilinearly, with antialiasing when shrinking), and
the discriminator sees the attack's images converted back to what it was trained on. Nothing is retrained:
the prior still only makes the faces it learned (gray faces stay gray in all 3 channels), which the prior run's
name and its `adapt` record say ("grayscale replicated to 3 channels", "64 px resized to 128 px").

An adapted prior is its own prior run (config and prior.json carry `adapt`), so attacks, reports and the
registry name it as such; `load_prior` wraps G and D (AdaptedGenerator / AdaptedDiscriminator) when it loads.
The same conversion lets an evaluation model judge a target of another size or channel count when both were
trained on the same split of the same data (mivis.evaluation.judges).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def convert(x: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """[-1, 1] images (N, C, H, W) -> (N, channels, size, size): gray replicated / RGB averaged, then resized."""
    c = x.shape[1]
    if c != channels:
        x = x.expand(-1, channels, -1, -1) if c == 1 else x.mean(1, keepdim=True)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < x.shape[-1]).clamp(-1, 1)
    return x


def describe(src_size: int, src_channels: int, size: int, channels: int) -> str:
    """Words for an adaptation ('' when there is none)."""
    parts = []
    if src_channels != channels:
        parts.append("grayscale replicated to 3 channels" if src_channels == 1 else "RGB averaged to grayscale")
    if src_size != size:
        parts.append(f"{src_size} px resized to {size} px")
    return ", ".join(parts)


def adapt_record(net: dict, size: int, channels: int) -> dict | None:
    """The `adapt` record of a prior with net config `net` used for (size, channels) images; None: it fits."""
    if (net["img_size"], net["channels"]) == (size, channels):
        return None
    return {"img_size": int(size), "channels": int(channels), "from_img_size": net["img_size"],
            "from_channels": net["channels"], "how": describe(net["img_size"], net["channels"], size, channels)}


def check_adapt(adapt, net: dict) -> str | None:
    """What is wrong with a prior.json `adapt` record, or None."""
    if adapt is None:
        return None
    if not isinstance(adapt, dict):
        return "adapt is not a JSON object"
    for k in ("img_size", "channels"):
        v = adapt.get(k)
        if not isinstance(v, int) or isinstance(v, bool):
            return f"adapt {k} is {str(v)[:40]!r}, not an int"
    if adapt["channels"] not in (1, 3):
        return f"adapt channels {adapt['channels']} is not 1 or 3"
    if not 16 <= adapt["img_size"] <= 256:
        return f"adapt img_size {adapt['img_size']} is not in 16..256"
    return None


def output_shape(info: dict) -> tuple[int, int]:
    """(img_size, channels) of the images a prior run makes for an attack (adapted or native)."""
    a = info.get("adapt") or info["net"]
    return a["img_size"], a["channels"]


class AdaptedGenerator(nn.Module):
    def __init__(self, g: nn.Module, size: int, channels: int):
        super().__init__()
        self.inner, self.img_size, self.channels = g, size, channels
        self.z_dim, self.num_classes = g.z_dim, g.num_classes

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return convert(self.inner(z, y), self.channels, self.img_size)

    # the feature blocks IF-GMI searches are the inner generator's; only the images are converted
    @property
    def blocks(self) -> int:
        return self.inner.blocks

    def head(self, z: torch.Tensor, block: int, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.inner.head(z, block, y)

    def tail(self, h: torch.Tensor, block: int, y: torch.Tensor | None = None) -> torch.Tensor:
        return convert(self.inner.tail(h, block, y), self.channels, self.img_size)

    def advance(self, h: torch.Tensor, block: int) -> torch.Tensor:
        return self.inner.advance(h, block)


class AdaptedDiscriminator(nn.Module):
    def __init__(self, d: nn.Module, size: int, channels: int):
        super().__init__()
        self.inner, self.native = d, (size, channels)
        self.head, self.num_classes, self.num_features = d.head, d.num_classes, d.num_features

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        return convert(x, self.native[1], self.native[0])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.features(self._in(x))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *, with_features: bool = False):
        return self.inner(self._in(x), y, with_features=with_features)

    def class_logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.inner.class_logits(f)


def wrap(G: nn.Module, D: nn.Module, net: dict, adapt: dict | None):
    if not adapt:
        return G, D
    return (AdaptedGenerator(G, adapt["img_size"], adapt["channels"]),
            AdaptedDiscriminator(D, net["img_size"], net["channels"]))


def pick_shipped(size: int, channels: int, conditional: bool, names: list[str], read_net) -> str | None:
    """The shipped prior to adapt for (size, channels): the same size if one exists, else the nearest size
    (preferring the larger, which is shrunk rather than enlarged); None when no shipped prior has that type."""
    cands = []
    for name in names:
        net = read_net(name)
        if bool(net["conditional"]) != conditional:
            continue
        cands.append((net["img_size"] != size, net["img_size"] < size, abs(net["img_size"] - size),
                      net["channels"] != channels, name))
    return sorted(cands)[0][-1] if cands else None
