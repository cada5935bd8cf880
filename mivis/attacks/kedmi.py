"""KEDMI (Chen et al. 2021): learn a Gaussian over the latent of an inversion-specific GAN.

As in KEDMI's code (method version 2): ONE Gaussian N(mu, exp(log_var)) per identity, mu starting
at 0 and log_var at 1; every step draws z = mu + exp(log_var / 2) * eps (fresh eps) and minimises
prior_loss(G(z)) + lambda * CE(T(G(z)), y), the loss averaged over a batch of `ref_batch`
identities (60 in KEDMI's code; with Adam this scaling matters only through Adam's eps), Adam lr
0.02. The final reconstructions are `restarts` draws from each identity's learned Gaussian (KEDMI
evaluates 5), seeded per identity and draw. prior_loss 'lse' is KEDMI's "improved" loss
softplus(lse) - lse of D's class logits, the realness its GAN was trained to give; KEDMI's code does
not clip the draws (clip 0; LOMMA's KEDMI path clips them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..params import Param, ParamError, ParamSet
from .base import Forward, per_sample_normal, register_attack
from .gmi import GMI, latent_step, step_params


def kedmi_trained(prior) -> bool:
    """Whether this prior's D was trained with KEDMI's objective (realness = logsumexp of class logits)."""
    return prior.config.get("objective") == "kedmi" and getattr(prior.D, "head", "none") == "classes"


class KEDMI(GMI):
    name = "kedmi"
    prior = "unconditional"

    def __init__(self, p, ctx):
        super().__init__(p, ctx)
        has_classes = getattr(ctx.prior.D, "head", "none") == "classes"
        if p["prior_loss"] == "lse" and not has_classes:
            raise ParamError("prior_loss=lse needs a kedmi prior (its discriminator has a class head); "
                             "use prior_loss=realness or auto with this prior")
        self.prior_kind = p["prior_loss"]
        if self.prior_kind == "realness" and kedmi_trained(ctx.prior):
            raise ParamError("prior_loss=realness: this kedmi prior was trained with KEDMI's objective, whose "
                             "realness is the lse of D's class logits (its realness head is untrained); use "
                             "prior_loss=lse or auto")
        if self.prior_kind == "auto":
            self.prior_kind = "lse" if kedmi_trained(ctx.prior) else "realness"

    def optimizer(self) -> dict:
        spec = latent_step(self.p, kind_paper="adam")
        spec.update(kind="adam", betas=(0.9, 0.999))
        return spec

    def candidates_per_identity(self, restarts: int) -> int:
        # one Gaussian per identity (KEDMI's code); restarts = draws from it at the end
        return 1 if self.p.get("step", "paper") == "paper" else restarts

    def final_draws(self, restarts: int) -> int:
        return restarts if self.p.get("step", "paper") == "paper" else 1

    def init(self, y, restarts, seed):
        n, d = len(y), self.ctx.prior.z_dim
        return {"mu": torch.zeros(n, d), "log_var": torch.ones(n, d)}

    def noise(self, n, gen):
        return {"eps": torch.randn(n, self.ctx.prior.z_dim, generator=gen, device=self.ctx.device)}

    def latent(self, lat, eps):
        z = lat["mu"] + torch.exp(0.5 * lat["log_var"]) * eps
        if self.p["clip"] > 0:
            z = z.clamp(-self.p["clip"], self.p["clip"])
        return z

    def images(self, lat, noise):
        return self.ctx.prior.G(self.latent(lat, noise["eps"]))

    def prior_loss(self, x):
        if self.prior_kind == "realness":
            return -self.ctx.prior.D(x).float()
        lse = self.ctx.prior.D.class_logits(self.ctx.prior.D.features(x)).float().logsumexp(1)
        return F.softplus(lse) - lse  # KEDMI "improved": -log sigmoid(lse)

    def project(self, lat) -> None:
        pass

    @torch.no_grad()
    def finalize(self, lat, y, restarts, seed, keep):
        draws = self.final_draws(keep)
        yy = y.repeat_interleave(draws)
        # draw k of identity c: seeded by (seed, c, k) (v1: by the restart's own index)
        kk = torch.arange(draws, device=y.device).repeat(len(y)) if draws > 1 else restarts.to(y.device)
        eps = per_sample_normal((self.ctx.prior.z_dim,), yy.cpu(), kk.cpu(), seed, "kedmi-final").to(y.device)
        src = torch.arange(len(y), device=y.device).repeat_interleave(draws)
        z = self.latent({k: v[src] for k, v in lat.items()}, eps)
        return self.ctx.prior.G(z), src


KEDMI_PARAMS = ParamSet([
    Param("iterations", int, 1500, "optimisation steps (KEDMI's code: 2400, recovery.py line 107; LOMMA's released "
          "KEDMI configs: 2400)", min=1, max=100000),
    Param("loss", str, "ce", "identity loss (paper: ce)",
          choices=("ce", "one_minus_p", "logit", "max_margin", "poincare")),
    Param("id_weight", float, 100.0, "lambda: weight of the identity loss (paper: 100)", min=0.0, max=1e6),
    Param("prior_weight", float, 1.0, "weight of the prior loss (paper: 1)", min=0.0, max=1e6),
    Param("prior_loss", str, "auto", "prior loss: 'lse' = KEDMI's softplus(lse) - lse of D's class logits (the "
          "paper's, on a prior trained with KEDMI's objective), 'realness' = -D(x) from a realness head; 'auto' = "
          "lse on a kedmi prior trained with KEDMI's objective, else realness", choices=("auto", "realness", "lse")),
    Param("lr", float, 0.02, "Adam learning rate on mu and log_var (paper: 0.02)", min=1e-6, max=100.0),
    Param("clip", float, 0.0, "clip the latent draws to [-clip, clip] before G (0 = off, as in KEDMI's code; "
          "LOMMA's KEDMI path clips at 1)", min=0.0, max=100.0),
    *step_params(60, "KEDMI: 60", "one Gaussian per identity, restarts = draws from it at the end",
                 "one Gaussian per restart, one draw each"),
])

register_attack(KEDMI, KEDMI_PARAMS, "KEDMI: learns a distribution over the latent of an inversion-specific GAN")
