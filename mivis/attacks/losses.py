"""Identity losses and image priors of the attacks, per sample (shape (N,)), reusable on their own.

`identity_loss(name, logits, y)` is what the attacks minimise to make the target say y; the
Fisher-information analysis calls the same function on the target's logits of inverted samples.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IDENTITY_LOSSES = ("ce", "one_minus_p", "logit", "max_margin", "poincare")


def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, reduction="none")


def one_minus_p(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 1 - logits.float().softmax(1).gather(1, y[:, None]).squeeze(1)


def logit(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LOMMA's logit loss: -logit_y."""
    return -logits.float().gather(1, y[:, None]).squeeze(1)


def max_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PLG-MI: -logit_y + max_{j != y} logit_j."""
    lg = logits.float()
    own = lg.gather(1, y[:, None]).squeeze(1)
    other = lg.scatter(1, y[:, None], float("-inf")).amax(1)
    return other - own


def poincare(logits: torch.Tensor, y: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """PPA's Poincare loss: u = logits / ||logits||_1, v = onehot - eps (clipped to [0, 1])."""
    lg = logits.float()
    u = lg / lg.abs().sum(1, keepdim=True).clamp_min(1e-12)
    v = (F.one_hot(y, lg.shape[1]).float() - eps).clamp(0, 1)
    uu, vv = (u * u).sum(1), (v * v).sum(1)
    du = ((u - v) ** 2).sum(1)
    arg = 1 + 2 * du / ((1 - uu) * (1 - vv)).clamp_min(1e-12)
    return torch.acosh(arg.clamp_min(1 + 1e-7))


_FNS = {"ce": ce, "one_minus_p": one_minus_p, "logit": logit, "max_margin": max_margin, "poincare": poincare}


def identity_loss(name: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample identity loss by name (one of IDENTITY_LOSSES)."""
    try:
        fn = _FNS[name]
    except KeyError:
        raise ValueError(f"identity loss {name!r}; choose one of {', '.join(IDENTITY_LOSSES)}") from None
    return fn(logits, y)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean((1, 2, 3)) + \
        (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean((1, 2, 3))


def l2(x: torch.Tensor) -> torch.Tensor:
    return x.float().pow(2).mean((1, 2, 3))


def target_likelihood(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """p_T(y | x) per sample."""
    return logits.float().softmax(1).gather(1, y[:, None]).squeeze(1)
