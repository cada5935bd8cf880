"""Fisher information per layer (TL-DMI's argument): the mean squared gradient of a loss over
each layer's parameters, accumulated over samples, normalised across layers for display.

Two losses on one model: classification FI (cross-entropy on private training images) and MI FI
(the attack's identity loss on its reconstructions), both differentiated w.r.t. the TARGET
model's parameters.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..progress import NULL, Reporter

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> per-sample loss


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, reduction="none")


def fisher_per_layer(model: nn.Module, layers: list[tuple[str, list[nn.Parameter]]], x: torch.Tensor,
                     y: torch.Tensor, loss_fn: LossFn = cross_entropy, batch_size: int = 1,
                     reporter: Reporter = NULL) -> list[dict]:
    """F_l = mean over theta in layer l of E_samples[(dL/dtheta)^2].

    batch_size=1 gives the empirical Fisher (squared per-sample gradients); larger batches square
    the gradient of the batch mean (faster, a coarser estimate): the choice is recorded.
    The model is used in eval mode (BatchNorm statistics fixed), as the attacker sees it.
    """
    model.eval()
    device = next(model.parameters()).device
    sums = [torch.zeros((), device=device, dtype=torch.float64) for _ in layers]
    n_batches = 0
    all_params = [p for _, ps in layers for p in ps]
    for i in range(0, len(x), batch_size):
        reporter.check()
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        with torch.enable_grad():  # callers may sit inside no_grad (e.g. an attack's step hook)
            loss = loss_fn(model(xb), yb).mean()
            grads = torch.autograd.grad(loss, all_params, allow_unused=True)
        k = 0
        for li, (_, ps) in enumerate(layers):
            for _ in ps:
                g = grads[k]
                if g is not None:
                    sums[li] += g.detach().double().pow(2).sum()
                k += 1
        n_batches += 1
        reporter.report(phase="fisher", step=n_batches, steps=-(-len(x) // batch_size))
    out = []
    for (name, ps), s in zip(layers, sums):
        n = sum(p.numel() for p in ps)
        out.append({"layer": name, "params": n, "fisher": float(s / max(1, n_batches) / max(1, n))})
    total = sum(r["fisher"] for r in out)
    for r in out:
        r["normalised"] = r["fisher"] / total if total > 0 else 0.0
    return out


def concentration(rows: list[dict], first_fraction: float = 0.5) -> float:
    """Share of normalised FI in the first `first_fraction` of layers (input side)."""
    k = max(1, int(round(len(rows) * first_fraction)))
    return float(sum(r["normalised"] for r in rows[:k]))
