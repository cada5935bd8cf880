"""RepVGG: the train-time multi-branch model and its fused single-conv form are one function.

Measured here, not asserted: same outputs and same input gradients (the attack's signal), so
removing RepVGG's identity branches by fusion cannot change model inversion.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def _randomize_bn(model: nn.Module, g: torch.Generator) -> None:
    # fresh BNs have mean 0 / var 1, which would make the fusion check nearly trivial
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _out_and_grad(model: nn.Module, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    out = model(x)
    (grad,) = torch.autograd.grad((out * w).sum(), x)
    return out.detach(), grad


def _branchy(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if hasattr(m, "reparameterize")
               and getattr(m, "reparam_conv", 1) is None)


def repvgg_equivalence(model: nn.Module | None = None, *, batch: int = 4, in_chans: int = 3,
                       img_size: int = 32, num_classes: int = 10, seed: int = 0,
                       randomize_bn: bool | None = None) -> dict:
    """Max abs differences of outputs and input gradients, train-time vs fused, in eval mode.

    Without a model, a seeded timm repvgg_a0 classifier is built with randomised BN statistics.
    """
    from timm.utils import reparameterize_model
    g = torch.Generator().manual_seed(seed)
    if model is None:
        from ..models import build_classifier
        torch.manual_seed(seed)
        model = build_classifier("repvgg_a0", num_classes, in_chans, img_size)
        randomize_bn = True if randomize_bn is None else randomize_bn
    else:
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        in_chans = first.in_channels
    model = copy.deepcopy(model).float().cpu().eval()
    if randomize_bn:
        _randomize_bn(model, g)
    fused = reparameterize_model(model, inplace=False).eval()
    x = torch.randn(batch, in_chans, img_size, img_size, generator=g)
    out_a, grad_a = _out_and_grad(model, x, w := torch.randn(model(x[:1]).shape[1:], generator=g))
    out_b, grad_b = _out_and_grad(fused, x, w)
    return {"max_abs_output_diff": (out_a - out_b).abs().max().item(),
            "max_abs_input_grad_diff": (grad_a - grad_b).abs().max().item(),
            "output_max_abs": out_a.abs().max().item(), "input_grad_max_abs": grad_a.abs().max().item(),
            "multi_branch_blocks_before": _branchy(model), "multi_branch_blocks_after": _branchy(fused),
            "params_before": sum(p.numel() for p in model.parameters()),
            "params_after": sum(p.numel() for p in fused.parameters()), "dtype": "float32"}
