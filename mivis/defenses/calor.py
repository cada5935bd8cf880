"""CALoR: a low-rank classification head, then confidence adaptation with the inverse-focal loss."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..params import Param, ParamError, ParamSet
from .base import DEFENSES, Defense

PARAMS = ParamSet([
    Param("rank", int, 40, "width r of the low-rank head BN(d) -> Linear(d, r) -> tanh -> Linear(r, C) "
          "(paper: 40-50; at most the feature width d)", min=1, max=100000),
    Param("adapt_epochs", int, 5, "confidence-adaptation epochs appended after the main schedule "
          "(0 = low-rank head only)", min=0, max=100),
    Param("adapt_lr", float, 0.05, "adaptation learning rate as a fraction of --lr (held constant)",
          min=1e-4, max=1.0, step=0.01),
    Param("alpha", float, 0.25, "inverse-focal loss weight alpha in alpha * p^gamma * log p", min=1e-4, max=10.0),
    Param("gamma", float, 8.0, "inverse-focal exponent gamma; the loss is lowest at p = exp(-1/gamma)",
          min=0.5, max=100.0),
])


def low_rank_head(d: int, r: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm1d(d), nn.Linear(d, r), nn.Tanh(), nn.Linear(r, num_classes))


def inverse_focal(logits: torch.Tensor, y: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """mean of alpha * p^gamma * log p on the true-class probability p (computed in log space)."""
    logp = F.log_softmax(logits.float(), 1).gather(1, y[:, None]).squeeze(1)
    return (alpha * torch.exp(gamma * logp) * logp).mean()


@DEFENSES.register("calor", params=PARAMS, paper="CALoR (Yu et al., arXiv 2410.05814)",
                   help="low-rank head plus inverse-focal confidence adaptation")
class CALoR(Defense):
    def check(self) -> None:
        if "mid" in self.model_cfg.get("defenses", {}):
            raise ParamError("CALoR and MID both replace the classification head; choose one of them")

    def modify_model(self, model: nn.Module, phase: str) -> nn.Module:
        d = model.num_features
        if self.p["rank"] > d:
            raise ParamError(f"calor rank: {self.p['rank']} is above this model's feature width {d}; "
                             f"allowed: 1 to {d}")
        model.head = low_rank_head(d, self.p["rank"], model.num_classes)
        return model

    def extra_epochs(self) -> int:
        return self.p["adapt_epochs"]

    def on_epoch_start(self, epoch: int, model: nn.Module, trainer: Any) -> nn.Module:
        if epoch == trainer.main_epochs:
            trainer.lr_scale = self.p["adapt_lr"]
        return model

    def task_loss(self, logits, y, *, epoch: int, trainer: Any):
        if epoch < trainer.main_epochs:
            return None
        return inverse_focal(logits, y, self.p["alpha"], self.p["gamma"])
