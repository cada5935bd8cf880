"""ResNet skip scaling: out = act(F(x) + s * shortcut(x)) for BasicBlock and Bottleneck.

Blocks are re-classed in place (not wrapped) so parameter names, and therefore saved weights
and TL-DMI initialisation, keep timm's layout.
"""
from __future__ import annotations

import torch
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from .skippath import SkipPath


class ScaledBasicBlock(BasicBlock):
    skip_scale: float = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        out = self.bn2(self.conv2(out))
        return self.act2(_add_skip(self, out, x))


class ScaledBottleneck(Bottleneck):
    skip_scale: float = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(out)))))
        out = self.bn3(self.conv3(out))
        return self.act3(_add_skip(self, out, x))


def _add_skip(block, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # same order as timm: optional SE and drop-path act on the residual branch only
    if block.se is not None:
        out = block.se(out)
    if block.drop_path is not None:
        out = block.drop_path(out)
    s = block.skip_scale
    if s == 0:
        return out  # skip removed: act(F(x)); the projection is gone from the block
    shortcut = block.downsample(x) if block.downsample is not None else x
    return out + shortcut if s == 1 else out + s * shortcut


_SCALED = {BasicBlock: ScaledBasicBlock, Bottleneck: ScaledBottleneck}


def is_block(m: nn.Module) -> bool:
    return isinstance(m, (BasicBlock, Bottleneck))


def last_norm(block: nn.Module) -> nn.Module:
    """The residual branch's last BatchNorm (the one timm's zero_init_last zeroes)."""
    return block.bn3 if isinstance(block, Bottleneck) else block.bn2


def scale_of(block: nn.Module) -> float:
    return float(getattr(block, "skip_scale", 1.0))


def skip_path(block: nn.Module) -> SkipPath:
    """The sum F(x) + s * shortcut(x) is the last activation's input; the shortcut is x or the projection."""
    s = scale_of(block)
    act = block.act3 if isinstance(block, Bottleneck) else block.act2
    if s == 0:
        return SkipPath(act, "in", None)  # skip removed, projection dropped
    return SkipPath(act, "in", lambda x: s * (block.downsample(x) if block.downsample is not None else x))


def set_block_scale(block: nn.Module, s: float, reinit_removed: bool) -> None:
    """Scale one block's shortcut. At s=0 the 1x1 projection is dropped; its weights are lost."""
    if not isinstance(block, tuple(_SCALED.values())):
        block.__class__ = _SCALED[type(block)]
    if s == 0:
        if block.downsample is not None:
            block.downsample = None
            block.projection_removed = True
        if reinit_removed:
            # timm zero-initialises this BN: without a shortcut the block would output act(0)
            # and pass no gradient, so a RoLSS model trained from scratch stays at chance.
            with torch.no_grad():
                last_norm(block).weight.fill_(1.0)
    elif getattr(block, "projection_removed", False):
        raise ValueError("a removed projection shortcut cannot be restored (its weights are gone)")
    block.skip_scale = float(s)
