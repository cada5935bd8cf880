"""The attack interface, the ATTACKS registry and the parameters every attack shares.

An attack defines how latents start (`init`), one differentiable forward pass from latents to
(images, target logits, per-sample loss) (`forward`), the optimiser, a projection after each
update, and how final reconstructions are read out (`finalize`). The engine (engine.py) runs all
identities x restarts of a run as one batched optimisation around these pieces.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import torch

from ..params import Param, ParamError, ParamSet
from ..registry import Registry
from .losses import identity_loss

ATTACKS = Registry("attack")

# Method version of each attack's dynamics, recorded in an attack run's config ("method_version") and in
# a sweep's attack step (so reuse never mixes versions). 2: GMI / LOMMA's step as the GMI code's
# (mean over ref_batch latents, Nesterov, unclipped start), KEDMI's one Gaussian per identity with
# draws, LOMMA's KEDMI path clipped, PPA's shared pool / crops / 100 final transforms. 3: LOMMA's
# regulariser inside the x id_weight (reg "paper"); GMI's best restart chosen by the target's raw logit with
# a running best from 0 (*_selected; the probability rule is *_selected_prob); PPA's final selection under
# RandomResizedCrop (scale 0.5-0.9, ratio 0.8-1.2) + flip drawn once per batch (final_transform "paper").
METHOD_VERSIONS = {"gmi": 3, "kedmi": 2, "lomma": 3, "ppa": 3}

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")

COMMON_PARAMS = ParamSet([
    Param("identities", "int_list", None, "target classes to invert (comma-separated; empty = all)",
          optional=True),
    Param("restarts", int, 5, "restarts (random starting latents) per identity: the 'seeds' of the protocol",
          min=1, max=10000),
    Param("seed", int, 0, "seed of the starting latents and the per-step randomness; two runs with the same "
          "seed, identities and restarts start from the same latents (paired comparisons)", min=0, max=2**31 - 1),
    Param("device", str, "auto", "where to run", choices=("auto", "cpu", "cuda")),
    Param("batch_size", int, 0, "latents optimised at once (0 = all on CPU; from free memory on CUDA); "
          "a CUDA out-of-memory error halves it and continues", min=0, max=1_000_000),
    Param("amp", bool, True, "bf16 autocast on CUDA (ignored on CPU)"),
    Param("compile", str, "off", "torch.compile the attack step ('reduce-overhead' adds CUDA graphs)",
          choices=COMPILE_MODES),
    Param("channels_last", bool, True, "channels_last memory format for the target and the prior's networks "
          "(off: NCHW). The classroom GMI step ran 1.30-1.46x faster with it on a 2-core AMD EPYC VM "
          "(benchmarks/attack_memory_format.py); on CUDA single-channel convs can be faster without"),
])


@dataclass
class Forward:
    """One forward pass: images, target logits used for the trace, total and identity loss per sample."""
    x: torch.Tensor
    logits: torch.Tensor
    loss: torch.Tensor
    id_loss: torch.Tensor


@dataclass
class AttackContext:
    target: torch.nn.Module          # eval mode, parameters frozen
    target_record: Any               # RunRecord
    prior: Any                       # priors.Prior or None
    device: torch.device
    num_classes: int
    image_shape: tuple[int, int, int]
    split: Any = None                # data.FaceSplit of the target (public images for LOMMA)
    workspace: Any = None
    reporter: Any = None
    extras: dict = field(default_factory=dict)


def latent_seed(seed: int, identity: int, restart: int, salt: str = "") -> int:
    """A per-(identity, restart) seed: starting points do not depend on batching or chunking."""
    return zlib.crc32(f"{salt}:{seed}:{identity}:{restart}".encode()) & 0x7FFFFFFF


def per_sample_normal(shape_tail: tuple[int, ...], y: torch.Tensor, restarts: torch.Tensor, seed: int,
                      salt: str = "z") -> torch.Tensor:
    out = torch.empty(len(y), *shape_tail)
    for i, (c, r) in enumerate(zip(y.tolist(), restarts.tolist())):
        g = torch.Generator().manual_seed(latent_seed(seed, c, r, salt))
        out[i] = torch.randn(*shape_tail, generator=g)
    return out


class Attack:
    """Base class. Subclasses set `name`, `prior` ('none', 'unconditional', 'conditional'), `optimizer`."""
    name = ""
    prior = "none"
    default_iterations = 300
    gradient_free = False  # True: the engine runs sample_step rounds instead of optimiser steps (pmean)

    def __init__(self, p: dict, ctx: AttackContext):
        self.p, self.ctx = p, ctx
        self.T = ctx.target

    # --- the pieces the engine calls ---
    @property
    def loss_name(self) -> str:
        return self.p.get("loss", "ce")

    def identity_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """This attack's identity loss per sample (reusable, e.g. for Fisher information on T)."""
        return identity_loss(self.loss_name, logits, y)

    def optimizer(self) -> dict:
        """{'kind': 'sgd', 'lr', 'momentum'} or {'kind': 'adam', 'lr', 'betas'}."""
        raise NotImplementedError

    def candidates_per_identity(self, restarts: int) -> int:
        """Latents optimised per identity (PPA optimises more candidates than it keeps)."""
        return restarts

    def max_chunk(self) -> int | None:
        """Most latents one chunk may hold, for memory the attack keeps outside the networks (the posterior
        mean's kept images); None: only the device's free memory limits a chunk."""
        return None

    def final_draws(self, restarts: int) -> int:
        """Reconstructions finalize() reads out per optimised latent (KEDMI: several draws of one Gaussian)."""
        return 1

    def init(self, y: torch.Tensor, restarts: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def noise(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return {}

    def stage_starts(self) -> list[int]:
        """Iterations at which a staged attack (IF-GMI) begins its next stage; none for one-stage attacks."""
        return []

    def begin_stage(self, stage: int, lat: dict, y: torch.Tensor) -> dict:
        """The latents searched from stage `stage` on (no grad; the engine makes them leaves)."""
        return lat

    def forward(self, lat: dict, y: torch.Tensor, noise: dict) -> Forward:
        raise NotImplementedError

    def project(self, lat: dict) -> None:
        pass

    @torch.no_grad()
    def finalize(self, lat: dict, y: torch.Tensor, restarts: torch.Tensor, seed: int, keep: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Final reconstructions and the indices (into this chunk) they come from (an index repeats when
        several reconstructions are drawn from one latent)."""
        x = self.render(lat, y)
        return x, torch.arange(len(y), device=x.device)

    def render(self, lat: dict, y: torch.Tensor) -> torch.Tensor:
        """Images for latents without per-step randomness (final read-out)."""
        return self.forward(lat, y, self.noise(len(y), None)).x


def check_prior_kind(attack_cls, prior) -> None:
    need = attack_cls.prior
    if need == "none":
        if prior is not None:
            raise ParamError(f"attack {attack_cls.name} optimises pixels and uses no prior; leave the prior empty")
        return
    if prior is None:
        kinds = "a plgmi (conditional)" if need == "conditional" else "a gmi or kedmi"
        raise ParamError(f"attack {attack_cls.name} needs {kinds} prior run")
    if need == "conditional" and not prior.conditional:
        raise ParamError(f"attack {attack_cls.name} needs a conditional (plgmi) prior; "
                         f"prior {prior.record['run']} is a {prior.type} prior")
    if need == "unconditional" and prior.conditional:
        raise ParamError(f"attack {attack_cls.name} needs an unconditional (gmi or kedmi) prior; "
                         f"prior {prior.record['run']} is conditional (plgmi)")


def replay_params(attack_cfg: dict) -> dict:
    """Parameters that rerun a stored attack run (its config's "attack" entry) with its own dynamics: a run
    from before method version 2 gets the labelled v1 update (step summed-nonpaper), a LOMMA run from before
    version 3 its regulariser outside the x id_weight (reg outside-nonpaper), a PPA run of version 2 its
    square per-image final crops (final_transform square-per-image-nonpaper); parameters that no
    longer exist are dropped (PPA's init_views: PPA's v1 selection itself is not kept, see
    docs/differences.md)."""
    name, params = attack_cfg["name"], dict(attack_cfg["params"])
    known = ATTACKS.get(name).params
    params = {k: v for k, v in params.items() if k in known}
    version = int(attack_cfg.get("method_version", 1))
    if version < 2 and "step" in known:
        params["step"] = "summed-nonpaper"
    if version < 3 and name == "lomma":  # v1 / v2: the regulariser outside the x id_weight
        params["reg"] = "outside-nonpaper"
    if version < 3 and name == "ppa" and version >= 2:  # v2: square crops drawn per image
        params["final_transform"] = "square-per-image-nonpaper"
    return params


def register_attack(cls, params: ParamSet, help: str):
    ATTACKS.register(cls.name, cls, params=COMMON_PARAMS + params, help=help, prior=cls.prior)
    return cls
