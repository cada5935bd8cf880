"""Skip scaling for timm blocks whose forward ends in `branch + self.<attr>(shortcut)`.

ConvNeXt (`shortcut`), RegNet (`downsample`: None means no skip) and ByobNet's residual blocks
(`shortcut`, e.g. timm's resnext26ts / resnet33ts / gernet). timm's own forward stays what runs;
only the shortcut module changes:

  s = 1    the shortcut module is re-classed in place so it returns s * shortcut(x) (names kept);
  0 < s    the same, scaled;
  s = 0    the shortcut module is replaced by `NoSkip` (adds an exact 0), so a projection's
           weights are dropped from the block, as for ResNet.

`reinit_removed` undoes the near-zero initialisation of the branch's last scale (timm's zero-init
last BatchNorm, ConvNeXt's layer scale of 1e-6): without a skip that branch would be dead.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .skippath import SkipPath


class NoSkip(nn.Module):
    """Stands in for a removed shortcut: `branch + NoSkip()(x)` is exactly `branch`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(())


_cache: dict[type, type] = {}


def _scaled_class(cls: type) -> type:
    if cls not in _cache:
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = cls.forward(self, x)
            return out if self.skip_scale == 1 else out * self.skip_scale
        _cache[cls] = type("Scaled" + cls.__name__, (cls,), {"forward": forward, "skip_scale": 1.0})
    return _cache[cls]


class _Spec(NamedTuple):
    shortcut: str               # attribute of the shortcut module (None on the block: no skip)
    last: str | None            # parameter path of the branch's last scale (re-initialised at s = 0)
    junction: str | None        # module applied right after the sum (its input is the sum); None: the block's output
    pre: str | None = None      # module the shortcut's input passes first (a pre-activation block's shared norm)


def _specs() -> dict[type, _Spec]:
    from timm.models import byobnet, convnext, regnet
    return {
        convnext.ConvNeXtBlock: _Spec("shortcut", "gamma", None),
        regnet.Bottleneck: _Spec("downsample", "conv3.bn.weight", "act3"),
        regnet.PreBottleneck: _Spec("downsample", None, None, "norm1"),
        byobnet.BasicBlock: _Spec("shortcut", "conv2_kxk.bn.weight", "act"),
        byobnet.BottleneckBlock: _Spec("shortcut", "conv3_1x1.bn.weight", "act"),
        byobnet.DarkBlock: _Spec("shortcut", "conv2_kxk.bn.weight", "act"),
        byobnet.EdgeBlock: _Spec("shortcut", "conv2_1x1.bn.weight", "act"),
        byobnet.SelfAttnBlock: _Spec("shortcut", "conv3_1x1.bn.weight", "act"),
    }


def _spec(block: nn.Module) -> _Spec | None:
    specs = _specs()
    return specs.get(type(block)) or next((v for k, v in specs.items() if isinstance(block, k)), None)


def is_block(m: nn.Module) -> bool:
    return _spec(m) is not None


def carries_skip(block: nn.Module) -> bool:
    spec = _spec(block)
    return spec is not None and getattr(block, spec.shortcut, None) is not None


def scale_of(block: nn.Module) -> float:
    return float(getattr(block, "skip_scale", 1.0))


def skip_path(block: nn.Module) -> SkipPath | None:
    """The term is the shortcut module's output (s * shortcut(x) once scaled; NoSkip at s = 0, None here)."""
    spec = _spec(block)
    sc = getattr(block, spec.shortcut, None)
    if sc is None:
        return None
    junction = (getattr(block, spec.junction), "in") if spec.junction else (block, "out")
    if isinstance(sc, NoSkip):
        return SkipPath(*junction, None)
    pre = getattr(block, spec.pre) if spec.pre else None
    return SkipPath(*junction, (lambda x: sc(pre(x))) if pre is not None else sc)


def _param(block: nn.Module, path: str) -> torch.Tensor | None:
    obj = block
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, torch.Tensor) else None


def set_block_scale(block: nn.Module, s: float, reinit_removed: bool) -> None:
    attr, last = _spec(block)[:2]
    sc = getattr(block, attr, None)
    if sc is None:
        raise ValueError(f"this {type(block).__name__} has no skip connection")
    if s == 0:
        if not isinstance(sc, NoSkip):
            if any(True for _ in sc.parameters()):
                block.projection_removed = True
            setattr(block, attr, NoSkip())
        if reinit_removed and last is not None:
            p = _param(block, last)
            if p is not None:
                with torch.no_grad():
                    p.fill_(1.0)
    else:
        if isinstance(sc, NoSkip):
            if getattr(block, "projection_removed", False):
                raise ValueError("a removed projection shortcut cannot be restored (its weights are gone)")
            sc = nn.Identity()
            setattr(block, attr, sc)
        if type(sc) not in _cache.values():
            sc.__class__ = _scaled_class(type(sc))
        sc.skip_scale = float(s)
    block.skip_scale = float(s)
