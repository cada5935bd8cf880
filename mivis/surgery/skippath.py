"""Where a block adds its skip, and what it adds: what the gradient-flow analysis needs to split the
gradient at a block's input into its skip path and its residual path exactly.

Each family module with a skip rule (resnet, inverted, vit, swin, shortcut) answers `skip_path(block)`;
`stages.skip_path(family, block)` dispatches as `block_scale` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass
class SkipPath:
    """The block computes `branch(x) + term(x)` at its junction.

    The sum is the output of `junction` (at = "out") or the input of `junction` (at = "in": a module
    applied right after the sum, e.g. the block's last activation). `term(x)` recomputes the added skip
    term from the block's input x, scale included (s * x, s * projection(x)), with the block's own
    modules; None where the skip is removed (s = 0), whose gradient is then exactly 0.
    """
    junction: nn.Module
    at: str
    term: Callable[[torch.Tensor], torch.Tensor] | None

    def __post_init__(self):
        if self.at not in ("in", "out"):
            raise ValueError(f"SkipPath.at must be 'in' or 'out', not {self.at!r}")


def scaled_identity(s: float) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The term s * x (None at s = 0)."""
    return None if s == 0 else (lambda x: s * x)
