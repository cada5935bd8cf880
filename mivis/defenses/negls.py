"""Negative label smoothing: CE against (1 - eps) * onehot + eps / C with eps < 0.

PPA's training (method version 2, schedule 'ppa'): eps = 0 until 50% of the epochs, then linear to
the set factor at 75%, held after (PPA: 0 until epoch 50 of 100, -0.05 by epoch 75), scaled to the
run's epochs. schedule 'constant-nonpaper' (mivis before version 2) applies the factor from epoch 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..params import Param, ParamSet
from .base import DEFENSES, Defense

SCHEDULES = ("ppa", "constant-nonpaper")

PARAMS = ParamSet([
    Param("smoothing", float, -0.05, "label-smoothing factor eps (paper: -0.05; negative: the defense; 0 = plain CE)",
          min=-1.0, max=0.0, step=0.01),
    Param("schedule", str, "ppa", "'ppa' = PPA's schedule: 0 for the first half of the epochs, linear to the factor by three quarters "
          "(paper: epochs 50 and 75 of 100); 'constant-nonpaper' = the factor from epoch 0 (mivis before method "
          "version 2; not the paper's)", choices=SCHEDULES),
])


def scheduled_smoothing(eps: float, epoch: int, epochs: int) -> float:
    """PPA's schedule scaled to `epochs` (0-based epoch): 0 before 50%, linear to eps at 75%, eps after."""
    frac = epoch / max(1, epochs)
    if frac < 0.5:
        return 0.0
    return eps * min(1.0, (frac - 0.5) / 0.25)


def smoothed_ce(logits: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    logp = F.log_softmax(logits.float(), 1)
    nll = -logp.gather(1, y[:, None]).squeeze(1)
    return ((1 - eps) * nll - eps * logp.mean(1)).mean()


@DEFENSES.register("negls", params=PARAMS, paper="negative label smoothing (Struppek et al., ICLR 2024)",
                   help="train with a negative label-smoothing factor")
class NegativeLabelSmoothing(Defense):
    def smoothing_at(self, epoch: int, epochs: int) -> float:
        if self.legacy or self.p["schedule"] == "constant-nonpaper":
            return self.p["smoothing"]
        return scheduled_smoothing(self.p["smoothing"], epoch, epochs)

    def task_loss(self, logits, y, *, epoch, trainer):
        eps = self.smoothing_at(epoch, trainer.main_epochs)
        return smoothed_ce(logits, y, eps)
