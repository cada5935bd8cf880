"""Gradient flow through the target during an attack: the norm of the gradient arriving at each
stage's input and at the latent, and the share of it that travels the skip path.

For a block out = act(F(x) + s * shortcut(x)) the gradient at x is the sum of two paths: through
the residual branch F and through the shortcut. The shortcut path's gradient is computed exactly
(the vector-Jacobian product of the skip term s * shortcut(x) with g, the gradient at the sum: s * g
for an identity, through the projection otherwise) and the residual path's is the remainder. A
stage's skip share is the mean over its skip-bearing blocks of |skip| / (|skip| + |residual|); with
s = 0 it is exactly 0.

Where each block's sum is and what its skip term is comes from the surgery modules
(`surgery.stages.skip_path`), so every block type whose skip mivis controls is split the same way:
ResNet / ResNeXt / SE-ResNet, inverted residuals (EfficientNet, MobileNet V2/V3), ViT / DeiT, Swin,
ConvNeXt, RegNet and ByobNet's residual blocks. Blocks without such a rule (unknown types, DenseNet's
concatenation, RepVGG) have no skip share (None); their stages still get gradient norms.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from ..surgery.stages import carries_skip, family_of, skip_path, stages


@contextlib.contextmanager
def _no_inplace(model: nn.Module):
    """In-place activations overwrite the pre-activation sum we need to hook: turn them off."""
    changed = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for m in changed:
        m.inplace = False
    try:
        yield
    finally:
        for m in changed:
            m.inplace = True


class _BlockProbe:
    """Captures, for one block, its input x, the gradient at x and at the skip junction (the sum)."""

    def __init__(self, family: str, block: nn.Module):
        self.family, self.block = family, block
        self.path = skip_path(family, block)
        if self.path is None:
            raise ValueError(f"mivis has no skip rule for this {type(block).__name__} in a {family} model")
        self.handles, self.x, self.g_x, self.g_junction = [], None, None, None
        self.handles.append(block.register_forward_pre_hook(self._pre))
        if self.path.at == "in":
            self.handles.append(self.path.junction.register_forward_pre_hook(self._junction_pre))
        else:
            self.handles.append(self.path.junction.register_forward_hook(self._junction_out))

    def _pre(self, module, args):
        x = args[0]
        if x.requires_grad:
            self.x = x
            x.register_hook(self._set("g_x"))

    def _junction_pre(self, module, args):
        if args[0].requires_grad:
            args[0].register_hook(self._set("g_junction"))

    def _junction_out(self, module, args, out):
        if out.requires_grad:
            out.register_hook(self._set("g_junction"))

    def _set(self, name):
        def hook(g):
            setattr(self, name, g.detach())
        return hook

    def skip_gradient(self) -> torch.Tensor | None:
        """The gradient at x along the skip path: the VJP of the skip term with the gradient at the sum."""
        if self.g_x is None:
            return None
        if self.path.term is None:  # skip removed (s = 0)
            return torch.zeros_like(self.g_x)
        if self.g_junction is None:
            return None
        x = self.x.detach().requires_grad_(True)
        with torch.enable_grad():
            term = self.path.term(x)
            if not term.requires_grad:
                return torch.zeros_like(self.g_x)
            (vjp,) = torch.autograd.grad(term, x, grad_outputs=self.g_junction)
        return vjp

    def remove(self):
        for h in self.handles:
            h.remove()


def _carries(family: str, block: nn.Module, index: int = 0) -> bool:
    return carries_skip(family, block, index) and skip_path(family, block) is not None


def gradient_flow(model: nn.Module, loss_of: Callable[[], torch.Tensor],
                  latent: torch.Tensor | None = None) -> dict:
    """Run `loss_of()` (a forward through `model` ending in a scalar loss) and backprop.

    Returns per stage: the gradient norm at its input (mean over samples of the per-sample L2
    norm) and its skip share (None where the stage has no skip path); and the latent's gradient
    norm when `latent` (a leaf the loss depends on) is given.
    """
    model.eval()
    fam = family_of(model)
    sts = stages(model)
    stage_inputs: dict[int, torch.Tensor] = {}
    handles = []

    def grab(i):
        def pre(module, args):
            x = args[0]
            if isinstance(x, (list, tuple)):  # a DenseNet block's first layer takes [block input]
                x = x[0] if len(x) == 1 else None
            if isinstance(x, torch.Tensor) and x.requires_grad:
                x.register_hook(lambda g, i=i: stage_inputs.__setitem__(i, g.detach()))
        return pre
    for i, st in enumerate(sts):
        first = st.blocks[0][1] if st.blocks else st.output
        handles.append(first.register_forward_pre_hook(grab(i)))
    probes = [[_BlockProbe(fam, b) for j, (_, b) in enumerate(st.blocks) if _carries(fam, b, j)] for st in sts]
    try:
        with _no_inplace(model), torch.enable_grad():
            if latent is not None and latent.grad is not None:
                latent.grad = None
            loss = loss_of()
            loss.backward()
        rows = []
        for i, st in enumerate(sts):
            g = stage_inputs.get(i)
            shares = []
            for p in probes[i]:
                skip = p.skip_gradient()
                if skip is None:
                    continue
                residual = p.g_x - skip
                a, r = _norm(skip), _norm(residual)
                shares.append(a / (a + r) if a + r > 0 else 0.0)
            rows.append({"stage": st.name, "grad_norm": _norm(g) if g is not None else None,
                         "skip_share": (sum(shares) / len(shares)) if shares else None,
                         "skip_blocks": len(shares)})
        out = {"family": fam, "stages": rows, "loss": float(loss.detach())}
        if latent is not None and latent.grad is not None:
            out["latent_grad_norm"] = _norm(latent.grad)
        return out
    finally:
        for h in handles:
            h.remove()
        for ps in probes:
            for p in ps:
                p.remove()


def _norm(g: torch.Tensor) -> float:
    """Mean over samples of the per-sample L2 norm (comparable across batch sizes)."""
    g = g.detach().float()
    return float(g.reshape(g.shape[0], -1).norm(dim=1).mean()) if g.dim() > 1 else float(g.norm())
