"""GMI (Zhang et al. 2020): search the GAN prior's latent space.

min_z -D(G(z)) + lambda * CE(T(G(z)), y); momentum SGD (lr 0.02, 0.9); z clipped to [-1, 1].
"""
from __future__ import annotations

import torch

from ..params import Param, ParamSet
from .base import Attack, Forward, per_sample_normal, register_attack


class GMI(Attack):
    name = "gmi"
    prior = "unconditional"

    def optimizer(self) -> dict:
        return {"kind": "sgd", "lr": self.p["lr"], "momentum": self.p["momentum"]}

    def init(self, y, restarts, seed):
        z = per_sample_normal((self.ctx.prior.z_dim,), y, restarts, seed)
        return {"z": z.clamp(-self.p["clip"], self.p["clip"])}

    def images(self, lat, noise):
        return self.ctx.prior.G(lat["z"])

    def prior_loss(self, x: torch.Tensor) -> torch.Tensor:
        return -self.ctx.prior.D(x).float()

    def identity_term(self, x, y):
        """(logits used for the trace, per-sample identity loss)."""
        logits = self.T(x)
        return logits, self.identity_loss(logits, y)

    def forward(self, lat, y, noise) -> Forward:
        x = self.images(lat, noise)
        logits, idl = self.identity_term(x, y)
        loss = self.p["prior_weight"] * self.prior_loss(x) + self.p["id_weight"] * idl
        return Forward(x, logits, loss, idl)

    def render(self, lat, y):
        return self.ctx.prior.G(lat["z"])

    def project(self, lat) -> None:
        lat["z"].clamp_(-self.p["clip"], self.p["clip"])


GMI_PARAMS = ParamSet([
    Param("iterations", int, 1500, "optimisation steps (paper: 1500; 3000 in TL-DMI)", min=1, max=100000),
    Param("loss", str, "ce", "identity loss", choices=("ce", "one_minus_p", "logit", "max_margin", "poincare")),
    Param("id_weight", float, 100.0, "lambda: weight of the identity loss", min=0.0, max=1e6),
    Param("prior_weight", float, 1.0, "weight of the discriminator prior -D(G(z))", min=0.0, max=1e6),
    Param("lr", float, 0.02, "momentum-SGD learning rate on z", min=1e-6, max=100.0),
    Param("momentum", float, 0.9, "SGD momentum", min=0.0, max=0.999),
    Param("clip", float, 1.0, "z is clipped to [-clip, clip] after every step", min=0.01, max=100.0),
])

register_attack(GMI, GMI_PARAMS, "GMI: latent search in a GAN prior, discriminator prior + identity loss")
