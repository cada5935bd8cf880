"""MID: a variational information bottleneck head; the loss adds beta * KL(q(z|x) || N(0, I)).

As in MID's code (and every public VIB: BiDO, TL-DMI, the MI toolbox): the KL is in nats, and z is
sampled z = mu + std * eps at training, test and attack time. At test / attack time eps comes from a
generator seeded with `sample_seed` when the model is built, so a run is reproducible (the draws
follow the order of the forward calls: chunking an attack on a MID target changes which eps a latent
sees). test_time 'mean-nonpaper' is a deterministic variant (z = mu), not the paper's.
Runs stored by method version 1 (no defense_version in their model config) are rebuilt as trained
then: KL in bits, z = mu at test time.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..params import Param, ParamError, ParamSet
from .base import DEFENSES, Defense

TEST_TIME = ("sample", "mean-nonpaper")

PARAMS = ParamSet([
    Param("beta", float, 0.003, "weight of the KL (information) term, KL in nats as in the MID code (paper: "
          "0.003; mivis before method version 2 measured the KL in bits: its 0.003 equals 0.0043 here)",
          min=0.0, max=10.0, step=0.001),
    Param("bottleneck", int, None, "bottleneck width k (unset = half the feature width, as in MID)",
          min=1, max=100000, optional=True),
    Param("test_time", str, "sample", "z at test and attack time: 'sample' = mu + std * eps as MID's code "
          "(seeded), 'mean-nonpaper' = mu (deterministic; not the paper's)", choices=TEST_TIME),
    Param("sample_seed", int, 0, "seed of the test/attack-time draws of z (reset whenever the model is loaded)",
          min=0, max=2**31 - 1),
])


class VIBHead(nn.Module):
    """features -> (mu, std) -> z -> logits; z is sampled in training, and at test time unless test_time
    is 'mean-nonpaper' (or the run is a method-version-1 run)."""

    def __init__(self, d: int, k: int, num_classes: int, *, test_sample: bool = True, sample_seed: int = 0,
                 kl_bits: bool = False):
        super().__init__()
        self.k = k
        self.encoder = nn.Linear(d, 2 * k)
        self.fc = nn.Linear(k, num_classes)
        self.kl: torch.Tensor | None = None
        self.test_sample, self.sample_seed, self.kl_bits = test_sample, sample_seed, kl_bits
        self._gens: dict[str, torch.Generator] = {}

    def reset_sampler(self) -> None:
        self._gens = {}

    def _eps(self, std: torch.Tensor) -> torch.Tensor:
        key = str(std.device)
        if key not in self._gens:
            self._gens[key] = torch.Generator(device=std.device).manual_seed(self.sample_seed)
        return torch.randn(std.shape, generator=self._gens[key], device=std.device, dtype=torch.float32
                           ).to(std.dtype)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        stats = self.encoder(f)
        mu, std = stats[:, :self.k], F.softplus(stats[:, self.k:] - 5)  # MID's parameterisation
        if not self.training:
            self.kl = None
            if not self.test_sample:
                return self.fc(mu)
            return self.fc(mu + std * self._eps(std))
        self.kl = vib_kl(mu, std) / (math.log(2) if self.kl_bits else 1.0)
        return self.fc(mu + std * torch.randn_like(std))


def vib_kl(mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, std^2) || N(0, I)) in nats, summed over z, averaged over the batch."""
    mu32, std32 = mu.float(), std.float().clamp_min(1e-8)
    return -0.5 * (1 + 2 * std32.log() - mu32.pow(2) - std32.pow(2)).sum(1).mean()


@DEFENSES.register("mid", params=PARAMS, paper="MID (Wang et al., AAAI 2021)",
                   help="variational information bottleneck head, CE + beta * KL")
class MID(Defense):
    def modify_model(self, model: nn.Module, phase: str) -> nn.Module:
        k = self.p["bottleneck"] or max(1, model.num_features // 2)
        if k > model.num_features:
            raise ParamError(f"mid bottleneck: {k} is above the feature width {model.num_features}; "
                             f"allowed: 1 to {model.num_features}")
        model.head = VIBHead(model.num_features, k, model.num_classes,
                             test_sample=not self.legacy and self.p["test_time"] == "sample",
                             sample_seed=self.p["sample_seed"], kl_bits=self.legacy)
        return model

    def loss(self, loss, *, model, x, y, logits, epoch, trainer):
        kl = model.head.kl
        return loss if kl is None else loss + self.p["beta"] * kl
