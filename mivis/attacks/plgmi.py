"""PLG-MI (Yuan et al. 2023): search the latent of a pseudo-label conditional GAN for class y.

max-margin loss (-logit_y + max_{j != y} logit_j) of the target on `views` random augmentations
of G(z, y), summed; Adam lr 0.1; 600 iterations. The conditional generator is the prior.
"""
from __future__ import annotations

import torch

from ..params import Param, ParamSet
from .augment import random_view, view_randoms
from .base import Attack, Forward, per_sample_normal, register_attack


class PLGMI(Attack):
    name = "plgmi"
    prior = "conditional"

    @property
    def loss_name(self) -> str:
        return "max_margin"

    def optimizer(self) -> dict:
        return {"kind": "adam", "lr": self.p["lr"], "betas": (0.9, 0.999)}

    def init(self, y, restarts, seed):
        return {"z": per_sample_normal((self.ctx.prior.z_dim,), y, restarts, seed)}

    def noise(self, n, gen):
        return {f"view{k}": view_randoms(n, gen, self.ctx.device) for k in range(self.p["views"])}

    def forward(self, lat, y, noise) -> Forward:
        x = self.ctx.prior.G(lat["z"], y)
        first, idl = None, 0
        for k in range(self.p["views"]):
            v = random_view(x, r=noise[f"view{k}"]) if f"view{k}" in noise else x
            logits = self.T(v)
            first = logits if first is None else first
            idl = idl + self.identity_loss(logits, y)
        return Forward(x, first, idl, idl)

    def render(self, lat, y):
        return self.ctx.prior.G(lat["z"], y)

    def project(self, lat) -> None:
        if self.p["clip"] > 0:
            lat["z"].clamp_(-self.p["clip"], self.p["clip"])


register_attack(PLGMI, ParamSet([
    Param("iterations", int, 600, "optimisation steps (paper: 600)", min=1, max=100000),
    Param("lr", float, 0.1, "Adam learning rate on z", min=1e-6, max=100.0),
    Param("views", int, 2, "random augmentations of each image per step (paper: 2)", min=1, max=16),
    Param("clip", float, 0.0, "clip z to [-clip, clip] after each step (0 = off)", min=0.0, max=100.0),
]), "PLG-MI: max-margin latent search in a pseudo-label conditional GAN")
