"""GMI (Zhang et al. 2020): search the GAN prior's latent space.

min_z -D(G(z)) + lambda * CE(T(G(z)), y). As in the GMI code (method version 2, step "paper"):
the loss is averaged over a batch of `ref_batch` latents (100 in GMI; 60 in KEDMI / LOMMA / TL-DMI),
so each latent's gradient is 1/ref_batch of its own loss's gradient, whatever batch mivis runs;
Nesterov-form momentum (v = m*v - lr*g; z += -m*v_prev + (1+m)*v), lr 0.02, m 0.9; z starts as
an unclipped randn and is clipped to [-1, 1] after every step.
step "summed-nonpaper" is mivis's earlier update (method version 1): the per-latent loss summed
(a step ~ref_batch times larger), plain momentum SGD, clipped start. It is not the paper's.
"""
from __future__ import annotations

import torch

from ..params import Param, ParamSet
from .base import Attack, Forward, per_sample_normal, register_attack

STEPS = ("paper", "summed-nonpaper")


def latent_step(p: dict, kind_paper: str = "nesterov") -> dict:
    """The optimiser spec of a latent search: the paper's (mean over ref_batch) or mivis v1's (sum)."""
    if p.get("step", "paper") == "paper":
        return {"kind": kind_paper, "lr": p["lr"], "momentum": p.get("momentum", 0.0),
                "grad_scale": 1.0 / p["ref_batch"]}
    return {"kind": "sgd", "lr": p["lr"], "momentum": p.get("momentum", 0.0)}


class GMI(Attack):
    name = "gmi"
    prior = "unconditional"

    def optimizer(self) -> dict:
        return latent_step(self.p)

    def init(self, y, restarts, seed):
        z = per_sample_normal((self.ctx.prior.z_dim,), y, restarts, seed)
        if self.p.get("step", "paper") == "paper":
            return {"z": z}  # the GMI code starts from an unclipped randn
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


def step_params(ref_batch: int, paper: str, paper_step: str = "Nesterov momentum, unclipped randn start",
                v1_step: str = "plain momentum; clipped start") -> list[Param]:
    return [
        Param("step", str, "paper", f"latent update: 'paper' = the paper code's (loss averaged over ref_batch "
              f"latents, {paper_step}); 'summed-nonpaper' = mivis v1's update (per-latent loss summed: steps "
              f"~ref_batch times larger; {v1_step}), not the paper's", choices=STEPS),
        Param("ref_batch", int, ref_batch, f"the paper's batch of latents its loss is averaged over ({paper}); "
              "each latent's step equals the paper code's at that batch, whatever batch_size mivis runs",
              min=1, max=100000),
    ]


GMI_PARAMS = ParamSet([
    Param("iterations", int, 1500, "optimisation steps (paper: 1500; 3000 in TL-DMI)", min=1, max=100000),
    Param("loss", str, "ce", "identity loss (paper: ce)",
          choices=("ce", "one_minus_p", "logit", "max_margin", "poincare")),
    Param("id_weight", float, 100.0, "lambda: weight of the identity loss (paper: 100)", min=0.0, max=1e6),
    Param("prior_weight", float, 1.0, "weight of the discriminator prior -D(G(z)) (paper: 1)", min=0.0, max=1e6),
    Param("lr", float, 0.02, "momentum learning rate on z (paper: 0.02)", min=1e-6, max=100.0),
    Param("momentum", float, 0.9, "momentum (paper: 0.9, Nesterov form)", min=0.0, max=0.999),
    Param("clip", float, 1.0, "z is clipped to [-clip, clip] after every step (paper: 1)", min=0.01, max=100.0),
    *step_params(100, "GMI: 100"),
])

register_attack(GMI, GMI_PARAMS, "GMI: latent search in a GAN prior, discriminator prior + identity loss")
