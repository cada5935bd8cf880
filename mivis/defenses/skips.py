"""RoLSS / SSF: one skip scale per stage, applied before training (the model trains as modified)."""
from __future__ import annotations

from torch import nn

from ..params import FLOAT_LIST, Param, ParamError, ParamSet
from ..surgery import SCALABLE, check_scales, rolss_scales, set_stage_scales
from ..surgery.vit import MODES
from .base import DEFENSES, Defense, archs_of, family, skeleton

PARAMS = ParamSet([
    Param("scales", FLOAT_LIST, None, "one skip scale per stage, input to output: 1 keeps the skips, "
          "0 removes them (RoLSS), between scales them (SSF; paper: 0.2 additive, 0.01 DenseNet); "
          "unset = RoLSS, the last stage with skips removed", min=0.0, max=1.0, optional=True, step=0.05),
    Param("mode", str, "both", "ViT/DeiT only: scale the attention residual, the MLP residual, or both",
          choices=MODES),
])


@DEFENSES.register("skips", params=PARAMS, paper="RoLSS / SSF (Koh et al., ECCV 2024)",
                   help="remove (0) or scale (0-1) the skip connections of chosen stages",
                   cli_aliases={"scales": "--skips"})
class Skips(Defense):
    def check(self) -> None:
        fam = family(self.model_cfg)
        if fam not in SCALABLE:
            raise ParamError(f"skips: {self.model_cfg['arch']} has no skip connections that can be scaled; "
                             f"choose one of: {archs_of(SCALABLE)}")
        if self.p["mode"] != "both" and fam != "vit":
            raise ParamError(f"skips mode: {self.p['mode']!r} applies to ViT/DeiT only; "
                             f"use mode both for {self.model_cfg['arch']}")
        model = skeleton(self.model_cfg)
        self.scales = check_scales(model, self.p["scales"] if self.p["scales"] is not None else rolss_scales(model))
        self.p["scales"] = self.scales  # recorded resolved, so the run's config says what was trained

    def modify_model(self, model: nn.Module, phase: str) -> nn.Module:
        return set_stage_scales(model, self.scales, mode=self.p["mode"])
