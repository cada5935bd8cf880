"""White-box input optimisation (MIFace / DeepInversion-lite): pixels, no prior."""
from __future__ import annotations

import torch

from ..params import Param, ParamSet
from .base import Attack, Forward, per_sample_normal, register_attack
from .losses import l2, total_variation


class WhiteBox(Attack):
    name = "whitebox"
    prior = "none"

    def optimizer(self) -> dict:
        return {"kind": "adam", "lr": self.p["lr"], "betas": (0.9, 0.999)}

    def init(self, y, restarts, seed):
        c, h, w = self.ctx.image_shape
        return {"x": (per_sample_normal((c, h, w), y, restarts, seed, "pixels") * self.p["init_std"]).clamp(-1, 1)}

    def forward(self, lat, y, noise) -> Forward:
        x = lat["x"]
        logits = self.T(x)
        idl = self.identity_loss(logits, y)
        loss = idl + self.p["tv_weight"] * total_variation(x) + self.p["l2_weight"] * l2(x)
        return Forward(x, logits, loss, idl)

    def project(self, lat) -> None:
        lat["x"].clamp_(-1, 1)


register_attack(WhiteBox, ParamSet([
    Param("iterations", int, 300, "optimisation steps", min=1, max=100000),
    Param("loss", str, "ce", "identity loss: cross-entropy or MIFace's 1 - p_y", choices=("ce", "one_minus_p")),
    Param("lr", float, 0.05, "Adam learning rate on the pixels", min=1e-6, max=10.0),
    Param("tv_weight", float, 0.05, "total-variation prior weight", min=0.0, max=100.0),
    Param("l2_weight", float, 0.01, "L2 (pixel energy) prior weight", min=0.0, max=100.0),
    Param("init_std", float, 0.1, "standard deviation of the random starting images", min=0.0, max=1.0),
]), "white-box input optimisation of the pixels (no prior): the MIFace baseline")
