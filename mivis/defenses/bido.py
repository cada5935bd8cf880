"""BiDO-HSIC: CE + a_x * sum_l HSIC(X, Z_l) - a_y * sum_l HSIC(Y, Z_l) over the stage outputs Z_l.

HSIC is BiDO's normalised (CCA-style) estimate: Gaussian kernels with variance 2 sigma^2 dim,
centred, R = K (K + eps m I)^-1, HSIC = sum(R_a * R_b^T); labels use a linear kernel on one-hot
codes, as in the BiDO code.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..params import Param, ParamSet
from ..surgery import stages
from .base import DEFENSES, Defense

PARAMS = ParamSet([
    Param("a_x", float, 0.05, "weight of the input-dependence penalty sum_l HSIC(X, Z_l)", min=0.0, max=100.0),
    Param("a_y", float, 0.5, "weight of the label-dependence reward sum_l HSIC(Y, Z_l)", min=0.0, max=100.0),
    Param("sigma", float, 5.0, "Gaussian kernel width (BiDO: 5)", min=1e-3, max=1e3),
])


def _kernel(a: torch.Tensor, sigma: float | None) -> torch.Tensor:
    # float64: with eps = 1e-5 m the inverse is ill-conditioned, float32 loses ~3 digits
    a = a.flatten(1).double()
    k = torch.cdist(a, a).pow(2).neg().div(2 * sigma ** 2 * a.shape[1]).exp() if sigma else a @ a.T
    m = a.shape[0]
    h = torch.eye(m, device=a.device, dtype=a.dtype) - 1.0 / m
    return k @ h


def hsic(a: torch.Tensor, b: torch.Tensor, sigma: float, b_linear: bool = False) -> torch.Tensor:
    """BiDO's normalised HSIC between two batches (rows are samples)."""
    ka, kb = _kernel(a, sigma), _kernel(b, None if b_linear else sigma)
    m = ka.shape[0]
    reg = 1e-5 * m * torch.eye(m, device=ka.device, dtype=ka.dtype)
    ra, rb = ka @ torch.linalg.inv(ka + reg), kb @ torch.linalg.inv(kb + reg)
    return (ra * rb.T).sum().float()


@DEFENSES.register("bido", params=PARAMS, paper="BiDO-HSIC (Peng et al., KDD 2022)",
                   help="bilateral dependency optimisation: less input, more label information per stage")
class BiDO(Defense):
    def __init__(self, params: dict, model_cfg: dict):
        super().__init__(params, model_cfg)
        self._hooked: int | None = None
        self._z: list[torch.Tensor] = []

    def _capture(self, module, inputs, out) -> None:
        if module.training and torch.is_grad_enabled():  # training steps only, not evaluation
            self._z.append(out)

    def on_epoch_start(self, epoch: int, model: nn.Module, trainer: Any) -> nn.Module:
        if self._hooked != id(model):  # hook once per model object; stage modules survive TTS
            self._n = len(stages(model))
            for st in stages(model):
                st.output.register_forward_hook(self._capture)
            self._hooked = id(model)
        return model

    def loss(self, loss, *, model, x, y, logits, epoch, trainer):
        zs, self._z = self._z[-self._n:], []  # this step's stage outputs
        onehot = F.one_hot(y, logits.shape[1]).float()
        with torch.autocast(x.device.type, enabled=False):  # kernel inverses need fp32
            hx = sum(hsic(z, x, self.p["sigma"]) for z in zs)
            hy = sum(hsic(z, onehot, self.p["sigma"], b_linear=True) for z in zs)
        return loss + self.p["a_x"] * hx - self.p["a_y"] * hy
