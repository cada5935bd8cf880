"""Negative label smoothing: CE against (1 - eps) * onehot + eps / C with eps < 0.

PPA's training (schedule 'ppa', method version 3), as train_model.py's ls_scheduler (lines 51-58) with
0-based epochs: 0 before epoch 50; eps * (epoch + 1 - 50) / (num_epochs - 50) for epochs 50-74 (-0.001 ..
-0.025 at 100 epochs); eps from epoch 75. Epochs 50 and 75 of 100 are scaled to the run's epochs (half
and three quarters of them). Runs trained by method version 2 (defense_version 2) used a linear ramp
reaching eps at 75% and rebuild with it; schedule 'constant-nonpaper' (mivis before version 2) applies the
factor from epoch 0.
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
    Param("schedule", str, "ppa", "'ppa' = PPA's schedule: 0 for the first half of the epochs, then factor x (epoch + 1 "
          "- half) / half up to three quarters (half the factor there), the factor after (paper: epochs 50 and 75 of "
          "100); 'constant-nonpaper' = the factor from epoch 0 (mivis before method version 2; not the paper's)",
          choices=SCHEDULES),
])


def scheduled_smoothing(eps: float, epoch: int, epochs: int) -> float:
    """PPA's ls_scheduler scaled to `epochs` (0-based epoch): 0 before half, eps * (epoch + 1 - half) /
    (epochs - half) before three quarters, eps after (half = epochs / 2; PPA: 50 of 100)."""
    half, three_quarters = epochs / 2, epochs * 3 / 4
    if epoch < half:
        return 0.0
    if epoch < three_quarters:
        return eps * (epoch + 1 - half) / (epochs - half)
    return eps


def scheduled_smoothing_v2(eps: float, epoch: int, epochs: int) -> float:
    """Method version 2's schedule (not PPA's): 0 before 50% of the epochs, linear to eps at 75%, eps after."""
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
        if int(self.model_cfg.get("defense_version", 1)) == 2:  # trained by method version 2: its ramp
            return scheduled_smoothing_v2(self.p["smoothing"], epoch, epochs)
        return scheduled_smoothing(self.p["smoothing"], epoch, epochs)

    def task_loss(self, logits, y, *, epoch, trainer):
        eps = self.smoothing_at(epoch, trainer.main_epochs)
        return smoothed_ce(logits, y, eps)
