"""Swin skip scaling per block: x = s * x + attn(norm1(x)); x = s * x + mlp(norm2(x)).

Same semantics as ViT (mivis.surgery.vit): s scales the residual term, s = 0 leaves a plain
window-attention / MLP layer. The block is re-classed in place, so parameter names stay timm's;
the branches are timm's own (`_attn` does the window partition, shift and mask).
"""
from __future__ import annotations

import torch
from timm.models.swin_transformer import SwinTransformerBlock
from torch import nn

from .skippath import SkipPath, scaled_identity
from .vit import MODES, _res


class ScaledSwinTransformerBlock(SwinTransformerBlock):
    attn_scale: float = 1.0
    mlp_scale: float = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = _res(self.attn_scale, x, self.drop_path1(self._attn(self.norm1(x))))
        x = x.reshape(B, -1, C)
        x = _res(self.mlp_scale, x, self.drop_path2(self.mlp(self.norm2(x))))
        return x.reshape(B, H, W, C)


def is_block(m: nn.Module) -> bool:
    return type(m) in (SwinTransformerBlock, ScaledSwinTransformerBlock)


def scale_of(block: nn.Module, mode: str = "both") -> float:
    a, m = float(getattr(block, "attn_scale", 1.0)), float(getattr(block, "mlp_scale", 1.0))
    return {"attn": a, "mlp": m}.get(mode, a if a == m else min(a, m))


def skip_path(block: nn.Module) -> SkipPath:
    """As ViT's: x reaches the output (same (B, H, W, C) shape) as s_a * s_m * x past both branches."""
    return SkipPath(block, "out", scaled_identity(scale_of(block, "attn") * scale_of(block, "mlp")))


def set_block_scale(block: nn.Module, s: float, mode: str = "both") -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if type(block) is SwinTransformerBlock:
        block.__class__ = ScaledSwinTransformerBlock
    if mode in ("both", "attn"):
        block.attn_scale = float(s)
    if mode in ("both", "mlp"):
        block.mlp_scale = float(s)
