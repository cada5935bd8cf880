"""PPA-style attack (Struppek et al. 2022) on the project's own prior.

Initial selection: per identity, draw `pool` random latents and keep the `candidates` the target
is most confident about (confidence averaged over random views). Optimise them with the Poincare
loss on random views, Adam (lr 0.005, betas 0.1/0.1). Final selection: keep the `restarts`
candidates whose confidence, averaged over `final_views` random transforms, is highest.
"""
from __future__ import annotations

import torch

from ..device import autocast
from ..params import Param, ParamError, ParamSet
from .augment import random_view, view_randoms
from .base import Attack, Forward, latent_seed, per_sample_normal, register_attack
from .losses import target_likelihood


class PPA(Attack):
    name = "ppa"
    prior = "unconditional"

    def __init__(self, p, ctx):
        super().__init__(p, ctx)
        if p["candidates"] < 1 or p["pool"] < p["candidates"]:
            raise ParamError(f"ppa: pool ({p['pool']}) must be at least candidates ({p['candidates']})")

    @property
    def loss_name(self) -> str:
        return "poincare"

    def candidates_per_identity(self, restarts: int) -> int:
        if self.p["candidates"] < restarts:
            raise ParamError(f"ppa: candidates ({self.p['candidates']}) must be at least restarts ({restarts}), "
                             "the number kept by the final selection")
        return self.p["candidates"]

    def optimizer(self) -> dict:
        return {"kind": "adam", "lr": self.p["lr"], "betas": (self.p["beta"], self.p["beta"])}

    @torch.no_grad()
    def _confidence(self, x: torch.Tensor, y: torch.Tensor, views: int, gen) -> torch.Tensor:
        p = 0
        for _ in range(views):
            with autocast(self.ctx.device):
                p = p + target_likelihood(self.T(random_view(x, gen)), y)
        return p / views

    @torch.no_grad()
    def init(self, y, restarts, seed):
        """Initial selection: restarts here index candidates; the pool is drawn per identity."""
        dev, G = self.ctx.device, self.ctx.prior.G
        out = torch.empty(len(y), self.ctx.prior.z_dim)
        for c in y.unique().tolist():
            rows = (y == c).nonzero().flatten()
            yy = torch.full((self.p["pool"],), c, dtype=torch.long)
            pool = per_sample_normal((self.ctx.prior.z_dim,), yy, torch.arange(self.p["pool"]), seed, "ppa-pool")
            gen = torch.Generator(device=dev).manual_seed(latent_seed(seed, c, 0, "ppa-init"))
            conf = torch.cat([self._confidence(G(pool[i:i + 512].to(dev)).float(), yy[i:i + 512].to(dev),
                                               self.p["init_views"], gen).cpu()
                              for i in range(0, len(pool), 512)])
            best = conf.topk(len(rows)).indices
            out[rows.cpu()] = pool[best]
        return {"z": out}

    def noise(self, n, gen):
        return {"view": view_randoms(n, gen, self.ctx.device)}

    def forward(self, lat, y, noise) -> Forward:
        x = self.ctx.prior.G(lat["z"])
        v = random_view(x, r=noise["view"]) if "view" in noise else x
        logits = self.T(v)
        idl = self.identity_loss(logits, y)
        return Forward(x, logits, idl, idl)

    def render(self, lat, y):
        return self.ctx.prior.G(lat["z"])

    @torch.no_grad()
    def finalize(self, lat, y, restarts, seed, keep):
        x = self.render(lat, y).float()
        gen = torch.Generator(device=x.device).manual_seed(latent_seed(seed, int(y[0]), 0, "ppa-final"))
        conf = self._confidence(x, y, self.p["final_views"], gen)
        keep_idx = []
        for c in y.unique().tolist():
            rows = (y == c).nonzero().flatten()
            keep_idx.append(rows[conf[rows].topk(min(keep, len(rows))).indices.sort().values])
        idx = torch.cat(keep_idx)
        return x[idx], idx


register_attack(PPA, ParamSet([
    Param("iterations", int, 300, "optimisation steps", min=1, max=100000),
    Param("lr", float, 0.005, "Adam learning rate on z (PPA: 0.005)", min=1e-6, max=100.0),
    Param("beta", float, 0.1, "Adam beta1 = beta2 (PPA: 0.1, 0.1)", min=0.0, max=0.999),
    Param("pool", int, 200, "random latents drawn per identity for the initial selection", min=1, max=100000),
    Param("candidates", int, 10, "latents per identity kept by the initial selection and optimised "
          "(at least restarts)", min=1, max=10000),
    Param("init_views", int, 4, "random views averaged for the initial selection's confidence", min=1, max=64),
    Param("final_views", int, 10, "random transforms averaged for the final selection", min=1, max=256),
]), "PPA-style: Poincare loss, initial selection from random latents, final selection under transforms")
