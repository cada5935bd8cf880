"""IF-GMI (Qiu et al., ECCV 2024): search the prior's intermediate features, layer by layer.

As in IF-GMI's code (attacks/optimize.py, configs/*.yaml):
- initial selection: PPA's (one shared pool of random latents, the most confident per identity);
- stage 0 searches the latent z; stage k >= 1 searches the output of the generator's feature block k-1
  (the first is the s0 x s0 map after the fc layer), starting from where the previous stage left it, with
  the rest of the generator fixed; each stage runs its own number of steps (IF-GMI: 50, 10, 10, 10) with a
  fresh optimiser (Adam, lr 0.005, betas 0.1 / 0.1), the Poincare loss of the target on a random resized
  square crop of area 0.9-1.0;
- after every step a searched tensor is projected onto the l1 ball around its value at the stage's start;
- no final selection: every optimised candidate is a reconstruction.
Departures (docs/differences.md): IF-GMI's radii are absolute l1 norms for StyleGAN2's 512-channel
features (1000, 2000, ...); a DCGAN's feature maps have other sizes and scales, so here a stage's radius is
a FRACTION of the searched tensor's own l1 norm at the start of the stage (0 = no ball). StyleGAN2 also
feeds w to every later layer, so IF-GMI keeps optimising w in later stages; mivis's generator uses z only
in its first layer, where w's gradient after stage 0 would be zero, so z is not carried on.
"""
from __future__ import annotations

import torch

from ..params import FLOAT_LIST, INT_LIST, Param, ParamError, ParamSet
from ..progress import NULL
from .base import ATTACKS, Attack, Forward, register_attack
from .ppa import PPA, crop_view
from .surrogates import distill


def project_l1_ball(v: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of v (N, ...) onto the l1 ball of its radius (N,) (Duchi et al. 2008);
    rows already inside, and rows whose radius is <= 0 (no ball), are returned unchanged."""
    flat = v.reshape(len(v), -1)
    mag = flat.abs()
    inside = (mag.sum(1) <= radius) | (radius <= 0)
    mu = mag.sort(1, descending=True).values
    css = mu.cumsum(1)
    k = torch.arange(1, flat.shape[1] + 1, device=v.device, dtype=flat.dtype)
    r = radius.to(flat.dtype).clamp_min(0)[:, None]
    rho = ((mu * k > css - r) * k).amax(1).clamp_min(1)              # largest k with mu_k > (css_k - r) / k
    theta = (css.gather(1, (rho.long() - 1)[:, None]).squeeze(1) - r[:, 0]) / rho
    proj = (mag - theta[:, None]).clamp_min(0) * flat.sign()
    return torch.where(inside[:, None], flat, proj).reshape(v.shape)


def stage_lengths(iterations: int, steps: list[int]) -> list[int]:
    """Steps per stage: `steps` when they add up to `iterations`, else scaled to it (each stage >= 1)."""
    total = sum(steps)
    if total == iterations:
        return list(steps)
    if iterations < len(steps):
        raise ParamError(f"ifgmi: iterations ({iterations}) must be at least the number of stages ({len(steps)})")
    out = [max(1, round(s * iterations / total)) for s in steps]
    out[0] += iterations - sum(out)  # rounding goes to the latent stage
    if out[0] < 1:
        raise ParamError(f"ifgmi: cannot split {iterations} iterations as {steps}")
    return out


class IFGMI(PPA):
    name = "ifgmi"
    prior = "unconditional"

    def __init__(self, p, ctx):
        if p["final_selection"]:  # PPA's checks: pool >= candidates, the crops, the final ratio
            PPA.__init__(self, p, ctx)
        else:  # without PPA's final selection its candidates and final knobs are not used
            Attack.__init__(self, p, ctx)
            v = p["crop"]
            if len(v) != 2 or not 0 < v[0] <= v[1] <= 1:
                raise ParamError(f"ifgmi crop: two area fractions lo,hi with 0 < lo <= hi <= 1, not {v}")
        steps, radius = list(p["stage_steps"]), list(p["radius"])
        if not steps or any(s < 1 for s in steps):
            raise ParamError(f"ifgmi stage_steps: positive step counts, one per stage, not {steps}")
        if len(radius) != len(steps):
            raise ParamError(f"ifgmi radius: one value per stage ({len(steps)}), not {len(radius)}")
        blocks = ctx.prior.G.blocks if ctx.prior is not None else len(steps)
        if len(steps) - 1 > blocks:
            kind = ctx.prior.config.get("type", "this") if ctx.prior is not None else "this"
            raise ParamError(f"ifgmi: {len(steps)} stages, but a {kind} prior's generator has {blocks} feature "
                             f"block(s): at most {blocks + 1} stages; give stage_steps and radius "
                             f"{blocks + 1} values each (e.g. stage_steps "
                             f"{','.join(['70'] + ['10'] * blocks)}, radius {','.join(['0'] + ['0.1'] * blocks)})")
        self.archs = [a.strip() for a in (p["students"] or "").split(",") if a.strip()]
        if self.archs:
            from ..models import ARCHITECTURES
            for a in self.archs:
                ARCHITECTURES.get(a)
        self.students: list[torch.nn.Module] = []
        self.lengths = stage_lengths(p["iterations"], steps)
        self.radius = radius
        self.stage = 0
        self.anchor: torch.Tensor | None = None

    def prepare(self) -> None:
        """LOMMA's model augmentation (optional): students distilled from the target on the public images."""
        ctx = self.ctx
        self.students = [distill(ctx.workspace, ctx.target_record, self.T, ctx.split.public.x, a,
                                 self.p["student_epochs"], self.p["seed"] + k, ctx.device,
                                 ctx.reporter.child(student=a) if ctx.reporter else NULL)
                         for k, a in enumerate(self.archs)]

    def candidates_per_identity(self, restarts: int) -> int:
        if self.p["final_selection"]:
            return super().candidates_per_identity(restarts)
        if self.p["pool"] < restarts:
            raise ParamError(f"ifgmi: pool ({self.p['pool']}) must be at least restarts ({restarts}), the latents "
                             "the initial selection keeps per identity")
        return restarts

    def stage_starts(self) -> list[int]:
        starts, t = [], 0
        for n in self.lengths[:-1]:
            t += n
            starts.append(t)
        return starts

    def _set_anchor(self, v: torch.Tensor) -> None:
        self.anchor = v.detach().clone()
        frac = self.radius[self.stage]
        self.ball = self.anchor.flatten(1).abs().sum(1) * frac if frac > 0 else torch.zeros(len(v), device=v.device)

    def init(self, y, restarts, seed):
        self.stage = 0
        lat = super().init(y, restarts, seed)
        self._set_anchor(lat["z"])
        return lat

    @torch.no_grad()
    def begin_stage(self, stage: int, lat: dict, y: torch.Tensor) -> dict:
        """The next stage searches the output of feature block stage-1, computed from where this one stands."""
        G = self.ctx.prior.G
        # stage s searches the output of block s-1; the next stage starts from block s's output
        h = G.head(lat["z"], 0) if self.stage == 0 else G.advance(lat["h"], self.stage - 1)
        self.stage = stage
        self._set_anchor(h)
        return {"h": h.float().contiguous()}

    def images(self, lat) -> torch.Tensor:
        G = self.ctx.prior.G
        if self.stage == 0:
            return G(lat["z"])
        return G.tail(lat["h"], self.stage - 1)

    def forward(self, lat, y, noise) -> Forward:
        x = self.images(lat)
        v = crop_view(x, tuple(self.p["crop"]), flip=False, r=noise["view"]) if "view" in noise else x
        logits = self.T(v)
        idl = self.identity_loss(logits, y)
        if self.students:  # the loss averaged over the target and its students (LOMMA's augmentation)
            idl = (idl + sum(self.identity_loss(m(v), y) for m in self.students)) / (1 + len(self.students))
        return Forward(x, logits, idl, idl)

    def render(self, lat, y):
        return self.images(lat)

    def project(self, lat) -> None:
        key = "z" if self.stage == 0 else "h"
        if self.radius[self.stage] > 0:
            lat[key].copy_(self.anchor + project_l1_ball(lat[key] - self.anchor, self.ball))

    @torch.no_grad()
    def finalize(self, lat, y, restarts, seed, keep):
        if self.p["final_selection"]:
            return super().finalize(lat, y, restarts, seed, keep)
        x = self.render(lat, y).float()
        return x, torch.arange(len(y), device=x.device)


# with final_selection, PPA's final selection with PPA's own knobs (declared once, in ppa.py)
_PPA_FINAL = [ATTACKS.get("ppa").params[n] for n in ("final_views", "final_crop", "final_ratio", "final_batch",
                                                     "final_transform")]

register_attack(IFGMI, ParamSet([
    Param("iterations", int, 80, "optimisation steps in all, split over the stages as stage_steps (IF-GMI: "
          "50 + 10 + 10 + 10 = 80)", min=1, max=100000),
    Param("stage_steps", INT_LIST, [50, 10, 10, 10], "steps of each stage: the latent, then the output of the "
          "generator's 1st, 2nd, ... feature block (IF-GMI: 50,10,10,10); scaled when iterations differs"),
    Param("radius", FLOAT_LIST, [0.0, 0.3, 0.3, 0.3], "l1 ball of each stage around where it started, as a "
          "fraction of the searched tensor's l1 norm (0 = no ball; IF-GMI's radii are absolute StyleGAN2 "
          "values, see docs/differences.md)", min=0.0, max=100.0),
    Param("lr", float, 0.005, "Adam learning rate of every stage (IF-GMI: 0.005)", min=1e-6, max=100.0),
    Param("beta", float, 0.1, "Adam beta1 = beta2 (IF-GMI: 0.1, 0.1)", min=0.0, max=0.999),
    Param("pool", int, 1000, "random latents in the one pool of the initial selection (IF-GMI: 5000)", min=1,
          max=100000),
    Param("candidates", int, 10, "with final_selection: latents optimised per identity, the best `restarts` "
          "kept (IF-GMI: 50 candidates, all kept)", min=1, max=10000),
    Param("final_selection", bool, False, "PPA's final selection under 100 transforms (IF-GMI's code keeps "
          "every candidate: off)"),
    Param("crop", FLOAT_LIST, [0.9, 1.0], "area fraction range of the random resized square crop the target "
          "sees (IF-GMI: 0.9-1.0)", min=0.01, max=1.0),
    Param("students", str, None, "LOMMA's model augmentation, not IF-GMI's: architectures of students distilled "
          "from the target on the public images, comma-separated; the Poincare loss is averaged over the target "
          "and them (empty = the target alone, as IF-GMI)", optional=True),
    Param("student_epochs", int, 40, "distillation epochs per student (LOMMA's augmentation)", min=1, max=1000),
    *_PPA_FINAL,
]), "IF-GMI: the latent, then the generator's intermediate features layer by layer inside l1 balls")
