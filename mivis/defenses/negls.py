"""Negative label smoothing: CE against (1 - eps) * onehot + eps / C with eps < 0."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..params import Param, ParamSet
from .base import DEFENSES, Defense

PARAMS = ParamSet([
    Param("smoothing", float, -0.05, "label-smoothing factor eps (negative: the paper's defense; 0 = plain CE)",
          min=-1.0, max=0.0, step=0.01),
])


def smoothed_ce(logits: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    logp = F.log_softmax(logits.float(), 1)
    nll = -logp.gather(1, y[:, None]).squeeze(1)
    return ((1 - eps) * nll - eps * logp.mean(1)).mean()


@DEFENSES.register("negls", params=PARAMS, paper="negative label smoothing (Struppek et al., ICLR 2024)",
                   help="train with a negative label-smoothing factor")
class NegativeLabelSmoothing(Defense):
    def task_loss(self, logits, y, *, epoch, trainer):
        return smoothed_ce(logits, y, self.p["smoothing"])
