"""DenseNet skip scaling. Concatenative skips are removed or thinned, never multiplied.

Within a dense block with input width c0, growth k and L layers, at scale s each layer sees the
full output of the layer before it plus the first keep(C) = round(s * C) channels of every
earlier feature map (the block input included); the block emits the same set. So s = 1 is the
original block, and s = 0 gives a plain chain whose output is the last layer's k channels:

  layer 1 input: c0;  layer i >= 2 input: keep(c0) + (i - 2) * keep(k) + k
  block output:  keep(c0) + (L - 1) * keep(k) + k

Transitions (halving the width, as in DenseNet-BC), the final norm and the head follow the new
widths, so changed models train from scratch.
"""
from __future__ import annotations

import math

import torch
from timm.layers import get_norm_act_layer
from timm.models.densenet import DenseBlock, DenseLayer, DenseTransition
from torch import nn


def keep(s: float, c: int) -> int:
    """Channels kept of a c-wide earlier map at scale s (round half up, so it is unambiguous)."""
    return c if s == 1 else int(math.floor(s * c + 0.5))


def layer_in_widths(c0: int, k: int, n_layers: int, s: float) -> list[int]:
    return [c0] + [keep(s, c0) + (i - 2) * keep(s, k) + k for i in range(2, n_layers + 1)]


def block_out_width(c0: int, k: int, n_layers: int, s: float) -> int:
    return keep(s, c0) + (n_layers - 1) * keep(s, k) + k


class ScaledDenseBlock(nn.ModuleDict):
    """A dense block whose earlier feature maps are thinned to keep(s, C) channels."""

    def __init__(self, layers: list[DenseLayer], scale: float):
        super().__init__({f"denselayer{i + 1}": layer for i, layer in enumerate(layers)})
        self.skip_scale = float(scale)

    def _thin(self, f: torch.Tensor) -> torch.Tensor | None:
        n = keep(self.skip_scale, f.shape[1])
        return f if n == f.shape[1] else (f[:, :n] if n else None)

    def _gather(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        earlier = [t for t in map(self._thin, feats[:-1]) if t is not None]
        return earlier + [feats[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.values():
            feats.append(layer(self._gather(feats)))
        return torch.cat(self._gather(feats), 1)


def is_block(m: nn.Module) -> bool:
    return isinstance(m, (DenseBlock, ScaledDenseBlock))


def scale_of(block: nn.Module) -> float:
    return float(getattr(block, "skip_scale", 1.0))


def _norm_layer():
    return get_norm_act_layer("batchnorm2d", act_layer="relu")  # what timm's DenseNet uses


def _init(m: nn.Module) -> nn.Module:
    # timm's DenseNet init (kaiming-normal convs, unit BN), applied to rebuilt modules
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight)
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)
    return m


def _rebuild_block(block: nn.Module, c0: int, s: float) -> ScaledDenseBlock:
    layers = list(block.values())
    k = layers[0].conv2.out_channels
    bn_size = layers[0].conv1.out_channels // k
    new = []
    for layer, w in zip(layers, layer_in_widths(c0, k, len(layers), s)):
        same = layer.conv1.in_channels == w
        new.append(layer if same else _init(DenseLayer(w, k, bn_size, norm_layer=_norm_layer(),
                                                       drop_rate=layer.drop_rate)))
    return ScaledDenseBlock(new, s)


def set_scales(body: nn.Module, scales: list[float]) -> int:
    """Rebuild body.features for one scale per dense block; returns the new feature width."""
    feats = body.features
    names = [n for n, m in feats.named_children() if is_block(m)]
    c = next(iter(getattr(feats, names[0]).values())).conv1.in_channels
    for name, s in zip(names, scales):
        block = _rebuild_block(getattr(feats, name), c, s)
        setattr(feats, name, block)
        layers = list(block.values())
        c = block_out_width(layers[0].conv1.in_channels, layers[0].conv2.out_channels, len(layers), s)
        trans = getattr(feats, "transition" + name[len("denseblock"):], None)
        if trans is not None:
            if trans.conv.in_channels != c:
                setattr(feats, "transition" + name[len("denseblock"):],
                        _init(DenseTransition(c, c // 2, norm_layer=_norm_layer())))
            c = getattr(feats, "transition" + name[len("denseblock"):]).conv.out_channels
    if feats.norm5.num_features != c:
        feats.norm5 = _init(_norm_layer()(c))
    body.num_features = body.head_hidden_size = c
    return c
