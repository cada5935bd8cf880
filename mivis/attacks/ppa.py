"""PPA-style attack (Struppek et al. 2022) on the project's own prior.

As in PPA's code (method version 2):
- initial selection: ONE shared pool of `pool` random latents (seeded by the run's seed only); each
  identity keeps the `candidates` latents whose images the target is most confident are that
  identity, confidence = the mean over the image and its horizontal flip;
- optimisation: Poincare loss of the target on a random resized crop of the image (area scale
  `crop` = 0.9-1.0, square, nothing else), Adam (lr 0.005, betas 0.1 / 0.1);
- final selection: per identity the `restarts` candidates whose confidence, averaged over
  `final_views` = 100 random transforms, is highest. Method version 3 (final_transform "paper"), as PPA's
  attacks/final_selection.py (lines 42-49, 61-66): torchvision's RandomResizedCrop (area scale 0.5-0.9,
  aspect ratio 0.8-1.2, resized back to the image size, bilinear with antialias) + a horizontal flip with
  probability 1/2, applied to a whole batch of one identity's candidates at once, so ONE draw is shared by
  each batch of `final_batch` candidates (PPA: its attack batch 25 x 10 on one GPU, attack.py line 190).
  "square-per-image-nonpaper" is method version 2's square crops drawn per image.
The original uses StyleGAN2 and 224 px faces; here it runs on the project's own prior.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..device import autocast
from ..params import FLOAT_LIST, Param, ParamError, ParamSet
from .augment import random_view, view_randoms
from .base import Attack, Forward, latent_seed, per_sample_normal, register_attack
from .losses import target_likelihood

POOL_CHUNK = 512


def crop_view(x: torch.Tensor, area: tuple[float, float], flip: bool, r: torch.Tensor | None = None,
              gen: torch.Generator | None = None) -> torch.Tensor:
    """A random resized square crop whose AREA is a fraction in `area` (torchvision's scale), optionally
    flipped horizontally with probability 1/2; no rotation, no colour change."""
    side = (math.sqrt(area[0]), math.sqrt(area[1]))
    return random_view(x, gen, scale=side, max_rotate_deg=0.0, flip=flip, jitter=0.0, r=r)


FINAL_TRANSFORMS = ("paper", "square-per-image-nonpaper")


def resized_crop_box(h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float],
                     gen: torch.Generator | None) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random resized crop, drawn as torchvision's
    RandomResizedCrop.get_params draws it (up to 10 tries of area fraction ~ U(scale) and aspect ratio
    log-uniform in `ratio`, then the offsets; else the whole image at the nearest allowed ratio)."""
    area = h * w
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=gen).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=gen)).item()
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, size=(1,), generator=gen).item())
            left = int(torch.randint(0, w - cw + 1, size=(1,), generator=gen).item())
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def batch_transform(x: torch.Tensor, scale, ratio, gen: torch.Generator | None) -> torch.Tensor:
    """One RandomResizedCrop + RandomHorizontalFlip(0.5) draw applied to the whole batch (as torchvision's
    transforms do to a batched tensor), resized back to the batch's own size."""
    top, left, ch, cw = resized_crop_box(x.shape[-2], x.shape[-1], scale, ratio, gen)
    out = F.interpolate(x[..., top:top + ch, left:left + cw], size=tuple(x.shape[-2:]), mode="bilinear",
                        align_corners=False, antialias=True)
    if torch.rand(1, generator=gen).item() < 0.5:
        out = out.flip(-1)
    return out


class PPA(Attack):
    name = "ppa"
    prior = "unconditional"

    def __init__(self, p, ctx):
        super().__init__(p, ctx)
        if p["candidates"] < 1 or p["pool"] < p["candidates"]:
            raise ParamError(f"ppa: pool ({p['pool']}) must be at least candidates ({p['candidates']})")
        lo, hi = p["final_ratio"] if len(p["final_ratio"]) == 2 else (0, 0)
        if not 0 < lo <= hi:
            raise ParamError(f"ppa final_ratio: two aspect ratios lo,hi with 0 < lo <= hi, not {p['final_ratio']}")
        for k in ("crop", "final_crop"):
            v = p[k]
            if len(v) != 2 or not 0 < v[0] <= v[1] <= 1:
                raise ParamError(f"ppa {k}: two area fractions lo,hi with 0 < lo <= hi <= 1, not {v}")

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
    def _pool_scores(self, classes: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared pool (P, z_dim) and the target's confidence (P, len(classes)) on image + flip."""
        dev, G = self.ctx.device, self.ctx.prior.G
        n = self.p["pool"]
        pool = per_sample_normal((self.ctx.prior.z_dim,), torch.zeros(n, dtype=torch.long), torch.arange(n), seed,
                                 "ppa-pool")
        cls = torch.tensor(classes, device=dev)
        scores = []
        for i in range(0, n, POOL_CHUNK):
            with autocast(dev):
                x = G(pool[i:i + POOL_CHUNK].to(dev)).float()
                p = self.T(x).float().softmax(1) + self.T(x.flip(3)).float().softmax(1)
            scores.append((p[:, cls] / 2).cpu())
        return pool, torch.cat(scores)

    @torch.no_grad()
    def init(self, y, restarts, seed):
        """Initial selection from one shared pool: restarts here index the candidates of an identity."""
        classes = y.unique().tolist()
        pool, conf = self._pool_scores(classes, seed)
        out = torch.empty(len(y), self.ctx.prior.z_dim)
        yc = y.cpu()
        for j, c in enumerate(classes):
            rows = (yc == c).nonzero().flatten()
            best = conf[:, j].topk(len(rows)).indices  # ranked: candidate r is the pool's r-th best for c
            out[rows] = pool[best[restarts.cpu()[rows]]]
        return {"z": out}

    def noise(self, n, gen):
        return {"view": view_randoms(n, gen, self.ctx.device)}

    def forward(self, lat, y, noise) -> Forward:
        x = self.ctx.prior.G(lat["z"])
        v = crop_view(x, tuple(self.p["crop"]), flip=False, r=noise["view"]) if "view" in noise else x
        logits = self.T(v)
        idl = self.identity_loss(logits, y)
        return Forward(x, logits, idl, idl)

    def render(self, lat, y):
        return self.ctx.prior.G(lat["z"])

    @torch.no_grad()
    def final_confidence(self, x: torch.Tensor, y: torch.Tensor, seed: int,
                         candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Confidence averaged over final_views random transforms. 'paper': per identity, its candidates in
        candidate order are cut into batches of final_batch; each batch shares each of its final_views draws
        (generator seeded by (seed, identity, batch)). 'square-per-image-nonpaper' (v2): a square crop of
        area final_crop + flip drawn per image, seeded by (seed, view)."""
        if self.p["final_transform"] != "paper":
            p = torch.zeros(len(x), device=x.device)
            for k in range(self.p["final_views"]):
                gen = torch.Generator(device=x.device).manual_seed(latent_seed(seed, k, 0, "ppa-final"))
                r = view_randoms(len(x), gen, x.device)
                with autocast(self.ctx.device):
                    p += target_likelihood(self.T(crop_view(x, tuple(self.p["final_crop"]), flip=True, r=r)), y)
            return p / self.p["final_views"]
        cand = candidates if candidates is not None else torch.arange(len(x))
        scale, ratio, nb = tuple(self.p["final_crop"]), tuple(self.p["final_ratio"]), self.p["final_batch"]
        p = torch.zeros(len(x), device=x.device)
        yc, cc = y.cpu(), cand.cpu()
        groups = []  # (rows, generator) per batch of one identity's candidates
        for c in yc.unique().tolist():
            rows = (yc == c).nonzero().flatten()
            rows = rows[cc[rows].argsort()]
            for b in range(0, len(rows), nb):
                groups.append((rows[b:b + nb].to(x.device),
                               torch.Generator().manual_seed(latent_seed(seed, c, b // nb, "ppa-final-batch"))))
        order = torch.cat([idx for idx, _ in groups])
        for _ in range(self.p["final_views"]):  # each group's k-th draw; one forward pass for all groups
            v = torch.cat([batch_transform(x[idx], scale, ratio, gen) for idx, gen in groups])
            with autocast(self.ctx.device):
                p[order] += target_likelihood(self.T(v), y[order]).float()
        return p / self.p["final_views"]

    @torch.no_grad()
    def finalize(self, lat, y, restarts, seed, keep):
        x = self.render(lat, y).float()
        conf = self.final_confidence(x, y, seed, restarts)
        keep_idx = []
        for c in y.unique().tolist():
            rows = (y == c).nonzero().flatten()
            keep_idx.append(rows[conf[rows].topk(min(keep, len(rows))).indices.sort().values])
        idx = torch.cat(keep_idx)
        return x[idx], idx


register_attack(PPA, ParamSet([
    Param("iterations", int, 300, "optimisation steps (PPA: 70 on StyleGAN2 at 224 px)", min=1, max=100000),
    Param("lr", float, 0.005, "Adam learning rate on z (PPA: 0.005)", min=1e-6, max=100.0),
    Param("beta", float, 0.1, "Adam beta1 = beta2 (PPA: 0.1, 0.1)", min=0.0, max=0.999),
    Param("pool", int, 1000, "random latents in the ONE pool shared by all identities for the initial "
          "selection (PPA: 5000)", min=1, max=100000),
    Param("candidates", int, 10, "latents per identity kept by the initial selection and optimised "
          "(at least restarts; PPA: 50 on CelebA, 16 on FaceScrub in the papers' protocol sizes)", min=1, max=10000),
    Param("crop", FLOAT_LIST, [0.9, 1.0], "area fraction range of the random resized crop the target sees "
          "during optimisation (PPA: 0.9-1.0, no other transform)", min=0.01, max=1.0),
    Param("final_views", int, 100, "random transforms averaged for the final selection (PPA: 100)", min=1,
          max=1000),
    Param("final_crop", FLOAT_LIST, [0.5, 0.9], "area fraction range of the final selection's random resized "
          "crops, each with a random horizontal flip (PPA: 0.5-0.9)", min=0.01, max=1.0),
    Param("final_ratio", FLOAT_LIST, [0.8, 1.2], "aspect ratio range (width/height) of the final selection's "
          "crops (PPA: 0.8-1.2; final_transform paper only)", min=0.1, max=10.0),
    Param("final_batch", int, 250, "candidates of one identity that share each final transform draw (PPA: its "
          "attack batch 25 x 10 on one GPU; final_transform paper only)", min=1, max=100000),
    Param("final_transform", str, "paper", "final selection's transforms: 'paper' = PPA's code (torchvision's "
          "RandomResizedCrop with final_crop / final_ratio + flip, one draw per batch of final_batch candidates); "
          "'square-per-image-nonpaper' = mivis method version 2 (square crops drawn per image), not the paper's",
          choices=FINAL_TRANSFORMS),
]), "PPA-style: Poincare loss, initial selection from one shared pool, final selection under 100 transforms")
