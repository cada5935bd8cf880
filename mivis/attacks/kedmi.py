"""KEDMI (Chen et al. 2021): learn a Gaussian over the latent of an inversion-specific GAN.

z = mu + exp(log_var / 2) * eps (reparameterised, fresh eps each step); minimise
prior_loss(G(z)) + lambda * CE(T(G(z)), y) with Adam (lr 0.02). As in KEDMI's code, mu starts at
0 and log_var at 1; restarts differ by their noise. The final reconstruction of a restart is one
draw from its learned distribution (seeded per identity and restart), drawn exactly as during the
optimisation (no clipping unless `clip` > 0: clipping only the final draw would change the images).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..params import Param, ParamError, ParamSet
from .base import Forward, per_sample_normal, register_attack
from .gmi import GMI


class KEDMI(GMI):
    name = "kedmi"
    prior = "unconditional"

    def __init__(self, p, ctx):
        super().__init__(p, ctx)
        if p["prior_loss"] == "lse" and getattr(ctx.prior.D, "head", "none") != "classes":
            raise ParamError("prior_loss=lse needs a kedmi prior (its discriminator has a class head); "
                             "use prior_loss=realness with this prior")

    def optimizer(self) -> dict:
        return {"kind": "adam", "lr": self.p["lr"], "betas": (0.9, 0.999)}

    def init(self, y, restarts, seed):
        n, d = len(y), self.ctx.prior.z_dim
        return {"mu": torch.zeros(n, d), "log_var": torch.ones(n, d)}

    def noise(self, n, gen):
        return {"eps": torch.randn(n, self.ctx.prior.z_dim, generator=gen, device=self.ctx.device)}

    def images(self, lat, noise):
        z = lat["mu"] + torch.exp(0.5 * lat["log_var"]) * noise["eps"]
        if self.p["clip"] > 0:
            z = z.clamp(-self.p["clip"], self.p["clip"])
        return self.ctx.prior.G(z)

    def prior_loss(self, x):
        if self.p["prior_loss"] == "realness":
            return -self.ctx.prior.D(x).float()
        lse = self.ctx.prior.D.class_logits(self.ctx.prior.D.features(x)).float().logsumexp(1)
        return F.softplus(lse) - lse  # KEDMI "improved": -log sigmoid(lse)

    def project(self, lat) -> None:
        pass

    @torch.no_grad()
    def finalize(self, lat, y, restarts, seed, keep):
        eps = per_sample_normal((self.ctx.prior.z_dim,), y, restarts, seed, "kedmi-final").to(y.device)
        z = lat["mu"] + torch.exp(0.5 * lat["log_var"]) * eps
        if self.p["clip"] > 0:
            z = z.clamp(-self.p["clip"], self.p["clip"])
        x = self.ctx.prior.G(z)
        return x, torch.arange(len(y), device=x.device)


KEDMI_PARAMS = ParamSet([
    Param("iterations", int, 1500, "optimisation steps (paper: 1500-3000)", min=1, max=100000),
    Param("loss", str, "ce", "identity loss", choices=("ce", "one_minus_p", "logit", "max_margin", "poincare")),
    Param("id_weight", float, 100.0, "lambda: weight of the identity loss", min=0.0, max=1e6),
    Param("prior_weight", float, 1.0, "weight of the prior loss", min=0.0, max=1e6),
    Param("prior_loss", str, "realness", "prior loss: -D(x) from the realness head, or KEDMI's "
          "softplus(lse) - lse of the class head (kedmi priors only)", choices=("realness", "lse")),
    Param("lr", float, 0.02, "Adam learning rate on mu and log_var", min=1e-6, max=100.0),
    Param("clip", float, 0.0, "clip the latent draws to [-clip, clip] during the attack and at the end "
          "(0 = off, as in KEDMI's sampling)", min=0.0, max=100.0),
])

register_attack(KEDMI, KEDMI_PARAMS, "KEDMI: learns a distribution over the latent of an inversion-specific GAN")
