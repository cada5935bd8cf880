"""MID: a variational information bottleneck head; the loss adds beta * KL(q(z|x) || N(0, I))."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..params import Param, ParamError, ParamSet
from .base import DEFENSES, Defense

PARAMS = ParamSet([
    Param("beta", float, 0.003, "weight of the KL (information) term, in bits as in the MID code",
          min=0.0, max=10.0, step=0.001),
    Param("bottleneck", int, None, "bottleneck width k (unset = half the feature width, as in MID)",
          min=1, max=100000, optional=True),
])


class VIBHead(nn.Module):
    """features -> (mu, std) -> z -> logits; z is sampled in training, the mean at eval."""

    def __init__(self, d: int, k: int, num_classes: int):
        super().__init__()
        self.k = k
        self.encoder = nn.Linear(d, 2 * k)
        self.fc = nn.Linear(k, num_classes)
        self.kl: torch.Tensor | None = None

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        stats = self.encoder(f)
        mu, std = stats[:, :self.k], F.softplus(stats[:, self.k:] - 5)  # MID's parameterisation
        if not self.training:
            self.kl = None
            return self.fc(mu)
        mu32, std32 = mu.float(), std.float().clamp_min(1e-8)
        self.kl = -0.5 * (1 + 2 * std32.log() - mu32.pow(2) - std32.pow(2)).sum(1).mean() / math.log(2)
        return self.fc(mu + std * torch.randn_like(std))


@DEFENSES.register("mid", params=PARAMS, paper="MID (Wang et al., AAAI 2021)",
                   help="variational information bottleneck head, CE + beta * KL")
class MID(Defense):
    def modify_model(self, model: nn.Module, phase: str) -> nn.Module:
        k = self.p["bottleneck"] or max(1, model.num_features // 2)
        if k > model.num_features:
            raise ParamError(f"mid bottleneck: {k} is above the feature width {model.num_features}; "
                             f"allowed: 1 to {model.num_features}")
        model.head = VIBHead(model.num_features, k, model.num_classes)
        return model

    def loss(self, loss, *, model, x, y, logits, epoch, trainer):
        kl = model.head.kl
        return loss if kl is None else loss + self.p["beta"] * kl
