"""ViT/DeiT skip scaling per encoder block: x = s_a * x + attn(norm1(x)); x = s_m * x + mlp(norm2(x)).

s scales the residual (skip) term, as for every other family: s = 0 leaves the block as a plain
attention/MLP layer, it never deletes the attention or the MLP. The block is re-classed in
place so parameter names stay timm's.
"""
from __future__ import annotations

from typing import Optional

import torch
from timm.models.vision_transformer import Block
from torch import nn

from .skippath import SkipPath, scaled_identity

MODES = ("both", "attn", "mlp")


def _res(s: float, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    if s == 1:
        return x + branch
    return branch if s == 0 else s * x + branch


class ScaledBlock(Block):
    attn_scale: float = 1.0
    mlp_scale: float = 1.0

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                is_causal: bool = False) -> torch.Tensor:
        # pass masks only when given: older timm attention takes no is_causal
        kw = {k: v for k, v in (("attn_mask", attn_mask), ("is_causal", is_causal)) if v is not None and v is not False}
        x = _res(self.attn_scale, x, self.drop_path1(self.ls1(self.attn(self.norm1(x), **kw))))
        return _res(self.mlp_scale, x, self.drop_path2(self.ls2(self.mlp(self.norm2(x)))))


def is_block(m: nn.Module) -> bool:
    return isinstance(m, Block)


def scale_of(block: nn.Module, mode: str = "both") -> float:
    a, m = float(getattr(block, "attn_scale", 1.0)), float(getattr(block, "mlp_scale", 1.0))
    return {"attn": a, "mlp": m}.get(mode, a if a == m else min(a, m))


def skip_path(block: nn.Module) -> SkipPath:
    """The path that bypasses both the attention and the MLP: x reaches the output as s_a * s_m * x."""
    return SkipPath(block, "out", scaled_identity(scale_of(block, "attn") * scale_of(block, "mlp")))


def set_block_scale(block: nn.Module, s: float, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if type(block) is Block:
        block.__class__ = ScaledBlock
    if mode in ("both", "attn"):
        block.attn_scale = float(s)
    if mode in ("both", "mlp"):
        block.mlp_scale = float(s)
