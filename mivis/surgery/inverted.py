"""Inverted-residual skip scaling (EfficientNet/V2, MobileNetV2/V3, MNASNet...): out = F(x) + s * x.

Only blocks timm built with a skip (stride 1, in == out channels) carry one. The block is
re-classed in place with `has_skip` off, so timm's own forward computes F(x) (parameter names
unchanged) and we add the scaled identity.
"""
from __future__ import annotations

import torch
from timm.models._efficientnet_blocks import (ConvBnAct, DepthwiseSeparableConv, EdgeResidual, InvertedResidual,
                                              MobileAttention, UniversalInvertedResidual)
from torch import nn

from .skippath import SkipPath, scaled_identity

# every timm block whose forward ends in `if self.has_skip: x = self.drop_path(x) + shortcut`
# (CondConvResidual subclasses InvertedResidual; EdgeResidual is EfficientNetV2's fused block)
BLOCK_TYPES = (ConvBnAct, DepthwiseSeparableConv, EdgeResidual, InvertedResidual, MobileAttention,
               UniversalInvertedResidual)
_cache: dict[type, type] = {}


def _scaled_class(cls: type) -> type:
    if cls not in _cache:
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = cls.forward(self, x)  # has_skip is False here: the residual branch only
            s = self.skip_scale
            if s == 0:
                return out
            out = self.drop_path(out)  # timm applies drop-path to the branch before the sum
            return out + x if s == 1 else out + s * x
        _cache[cls] = type("Scaled" + cls.__name__, (cls,), {"forward": forward, "skip_scale": 1.0})
    return _cache[cls]


def is_block(m: nn.Module) -> bool:
    return isinstance(m, BLOCK_TYPES)


def carries_skip(block: nn.Module) -> bool:
    return bool(getattr(block, "skip_capable", block.has_skip))


def scale_of(block: nn.Module) -> float:
    return float(getattr(block, "skip_scale", 1.0)) if carries_skip(block) else 0.0


def skip_path(block: nn.Module) -> SkipPath | None:
    """out = F(x) + s * x is the block's output (None for a block built without a skip)."""
    return SkipPath(block, "out", scaled_identity(scale_of(block))) if carries_skip(block) else None


def set_block_scale(block: nn.Module, s: float) -> None:
    if not carries_skip(block):
        raise ValueError("this block has no skip connection")
    if not hasattr(block, "skip_capable"):
        block.skip_capable = True
        block.has_skip = False
        block.__class__ = _scaled_class(type(block))
    block.skip_scale = float(s)
