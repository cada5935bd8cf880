"""TTS: train the full model for M epochs, then remove (or scale) the last stage's skips and
keep training the same weights on the same schedule."""
from __future__ import annotations

from typing import Any

from torch import nn

from ..params import Param, ParamError, ParamSet
from ..surgery import set_stage_scales, stage_scales, toggleable
from .base import DEFENSES, Defense, archs_of, family

FAMILIES = ("resnet", "inverted_residual", "vit")  # DenseNet widths change: weights cannot carry over

PARAMS = ParamSet([
    Param("switch_epoch", int, 5, "epochs trained with the full model before the switch (paper: 5 of 100)",
          min=1, max=999),
    Param("scale", float, 0.0, "last-stage skip scale after the switch: 0 removes the skips (paper), "
          "between scales them", min=0.0, max=1.0, step=0.05),
])


@DEFENSES.register("tts", params=PARAMS, paper="TTS (Koh et al., ECCV 2024)",
                   help="two-stage training: full model first, then the last stage's skips removed")
class TwoStage(Defense):
    def check(self) -> None:
        if family(self.model_cfg) not in FAMILIES:
            raise ParamError(f"tts: {self.model_cfg['arch']} is not supported (removing its skips changes "
                             f"layer widths or there are none); choose one of: {archs_of(FAMILIES)}")

    def check_training(self, train_cfg: dict, model: nn.Module) -> None:
        n = train_cfg["epochs"]
        if n < 2:
            raise ParamError("tts needs at least 2 epochs (one before and one after the switch); allowed epochs: 2 or more")
        if self.p["switch_epoch"] >= n:
            raise ParamError(f"tts switch_epoch: {self.p['switch_epoch']} leaves no epoch after the switch; "
                             f"allowed: 1 to {n - 1} for {n} epochs")

    def _mode(self) -> str:
        return self.model_cfg.get("defenses", {}).get("skips", {}).get("mode", "both")

    def _switch(self, model: nn.Module, reinit: bool) -> nn.Module:
        scales = [1.0 if s is None else s for s in stage_scales(model, self._mode())]
        scales[toggleable(model)[-1]] = self.p["scale"]
        # trained weights: do not touch the last BN (reinit is for fresh, zero-initialised models)
        return set_stage_scales(model, scales, mode=self._mode(), reinit_removed=reinit)

    def modify_model(self, model: nn.Module, phase: str) -> nn.Module:
        return self._switch(model, reinit=False) if phase == "final" else model

    def on_epoch_start(self, epoch: int, model: nn.Module, trainer: Any) -> nn.Module:
        return self._switch(model, reinit=False) if epoch == self.p["switch_epoch"] else model
