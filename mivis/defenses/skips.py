"""RoLSS / SSF: one skip scale per stage, applied before training (the model trains as modified).

Which skips RoLSS removes, when `scales` is unset (`preset`):
  paper-text  the paper's text: the last skip-bearing stage's skips removed (mivis's default).
  released    the RoLSS authors' released configurations: DenseNet-121/161/201 dense block 2,
              DenseNet-169 dense block 1, ViT/DeiT the first transformer block, ResNet-18 skip
              [1, 1, 1, 0.6] (the last stage at 0.6), ResNet-34/50/101/152 skip [1, 1, 1, 0] (the last
              stage removed). MobileNetV2's released config is not transcribed (docs/differences.md).
ViT/DeiT: `block_scales` sets one scale per transformer block (the stage list groups blocks in four).
"""
from __future__ import annotations

from torch import nn

from ..params import FLOAT_LIST, Param, ParamError, ParamSet
from ..surgery import SCALABLE, check_scales, rolss_scales, set_stage_scales, stages
from ..surgery.vit import MODES
from ..surgery.vit import set_block_scale as set_vit_block_scale
from .base import DEFENSES, Defense, archs_of, family, skeleton

PRESETS = ("paper-text", "released")

PARAMS = ParamSet([
    Param("scales", FLOAT_LIST, None, "one skip scale per stage, input to output: 1 keeps the skips, "
          "0 removes them (RoLSS), between scales them (SSF; paper: 0.2 additive, 0.01 DenseNet); "
          "unset = RoLSS as `preset` says", min=0.0, max=1.0, optional=True, step=0.05),
    Param("preset", str, "paper-text", "RoLSS when scales is unset: 'paper-text' = the paper's text (the last "
          "stage's skips removed); 'released' = the authors' released configs (DenseNet-121/161/201: dense block 2; "
          "DenseNet-169: block 1; ViT/DeiT: the first block; ResNet-18: [1, 1, 1, 0.6]; ResNet-34/50/101/152: "
          "[1, 1, 1, 0])",
          choices=PRESETS),
    Param("block_scales", FLOAT_LIST, None, "ViT/DeiT only: one skip scale per transformer block, input to output "
          "(overrides scales; e.g. RoLSS's released ViT config removes block 1 only)", min=0.0, max=1.0,
          optional=True, step=0.05),
    Param("mode", str, "both", "ViT/DeiT only: scale the attention residual, the MLP residual, or both",
          choices=MODES),
])

RELEASED_DENSE_BLOCK = {"densenet121": 2, "densenet161": 2, "densenet201": 2, "densenet169": 1}
# the released ResNet configs' per-stage skip list (RoLSS code's `skip` argument, stage 1..4)
RELEASED_RESNET = {"resnet18": [1.0, 1.0, 1.0, 0.6], "resnet34": [1.0, 1.0, 1.0, 0.0], "resnet50": [1.0, 1.0, 1.0, 0.0],
                   "resnet101": [1.0, 1.0, 1.0, 0.0], "resnet152": [1.0, 1.0, 1.0, 0.0]}


def vit_blocks(model: nn.Module) -> list[nn.Module]:
    body = getattr(model, "body", model)
    return list(body.blocks.children())


def released_config(arch: str, fam: str, model: nn.Module) -> tuple[list[float] | None, list[float] | None]:
    """(stage scales, ViT block scales) of the RoLSS authors' released configuration for this architecture."""
    n = len(stages(model))
    if arch in RELEASED_DENSE_BLOCK:
        b = RELEASED_DENSE_BLOCK[arch]
        return [0.0 if i == b - 1 else 1.0 for i in range(n)], None
    if fam == "vit":
        k = len(vit_blocks(model))
        return None, [0.0] + [1.0] * (k - 1)
    if arch in RELEASED_RESNET:
        return list(RELEASED_RESNET[arch]), None
    known = ", ".join([*RELEASED_DENSE_BLOCK, *RELEASED_RESNET, "vit_tiny", "deit_tiny"])
    if arch == "mobilenetv2":
        raise ParamError("skips preset released: the RoLSS authors' MobileNetV2 configuration is not transcribed in "
                         f"mivis (docs/differences.md); transcribed: {known}; use preset paper-text or give scales")
    raise ParamError(f"skips preset released: the RoLSS authors released no configuration for {arch}; "
                     f"released configs exist for {known}; use preset paper-text or give scales")


@DEFENSES.register("skips", params=PARAMS, paper="RoLSS / SSF (Koh et al., ECCV 2024)",
                   help="remove (0) or scale (0-1) the skip connections of chosen stages",
                   cli_aliases={"scales": "--skips"})
class Skips(Defense):
    block_scales: list[float] | None = None

    def check(self) -> None:
        fam = family(self.model_cfg)
        if fam not in SCALABLE:
            raise ParamError(f"skips: {self.model_cfg['arch']} has no skip connections that can be scaled; "
                             f"choose one of: {archs_of(SCALABLE)}")
        if self.p["mode"] != "both" and fam != "vit":
            raise ParamError(f"skips mode: {self.p['mode']!r} applies to ViT/DeiT only; "
                             f"use mode both for {self.model_cfg['arch']}")
        model = skeleton(self.model_cfg)
        blocks = self.p.get("block_scales")
        if blocks is not None:
            if fam != "vit":
                raise ParamError(f"skips block_scales: per-block scales apply to ViT/DeiT only; use scales for "
                                 f"{self.model_cfg['arch']}")
        elif self.p["scales"] is None and self.p.get("preset", "paper-text") == "released":
            scales, blocks = released_config(self.model_cfg["arch"], fam, model)
            if scales is not None:
                self.p["scales"] = scales
        if blocks is not None:
            k = len(vit_blocks(model))
            if len(blocks) != k:
                raise ParamError(f"skips block_scales: {len(blocks)} given, but this model has {k} transformer "
                                 f"blocks; give {k} numbers in [0, 1]")
            self.block_scales = [float(s) for s in blocks]
            self.p["block_scales"] = self.block_scales
            # the per-stage record: each group of blocks shows its smallest block scale
            groups = [len(st.blocks) for st in stages(model)]
            out, i = [], 0
            for g in groups:
                out.append(min(self.block_scales[i:i + g]))
                i += g
            if self.p["scales"] is not None and [float(v) for v in self.p["scales"]] != out:
                raise ParamError("skips: give scales (per stage) or block_scales (per block), not both")
            self.scales = out
            self.p["scales"] = out  # a stored run's record: each group's smallest block scale
            return
        self.scales = check_scales(model, self.p["scales"] if self.p["scales"] is not None else rolss_scales(model))
        self.p["scales"] = self.scales  # recorded resolved, so the run's config says what was trained

    def modify_model(self, model: nn.Module, phase: str) -> nn.Module:
        if self.block_scales is not None:
            for block, s in zip(vit_blocks(model), self.block_scales):
                set_vit_block_scale(block, s, self.p["mode"])
            return model
        return set_stage_scales(model, self.scales, mode=self.p["mode"])
