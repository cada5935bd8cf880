"""RoLSS / SSF: one skip scale per stage, applied before training (the model trains as modified).

Which skips RoLSS removes, when `scales` is unset (`preset`):
  paper-text  the paper's text: the last skip-bearing stage's skips removed (mivis's default).
  released    the configurations of the public RoLSS code (github.com/ShailenSmith/RoLSS,
              configs/training/targets/FaceScrub/*/skip.yaml): DenseNet-121/161/201 dense block 2,
              DenseNet-169 dense block 1, ViT/DeiT the first transformer block's MLP residual (the configs'
              mode mlp; mode both becomes mlp, mode attn stays), ResNet-18 skip
              [1, 1, 1, 0.6] (the last stage at 0.6), ResNet-34/50/101/152 skip [1, 1, 1, 0] (the last
              stage removed), ConvNeXt-T (timm:convnext_tiny) skip [0, 0, 1, 1], MobileNetV2 skip
              [1, 1, 1, 1, 1, 1, 0] over its seven block groups, whose last group (one block, 160 -> 320
              channels) has no skip: no skip is removed.
`layer3_split` (ResNets): the RoLSS code's ResNet builds layer3 with split=0.8 in every model, full ones
too (models/torchvision/models/resnet.py 222, 295-321): layer3's blocks from int(0.8 * n) on have no skip.
ViT/DeiT: `block_scales` sets one scale per transformer block (the stage list groups blocks in four).
"""
from __future__ import annotations

from torch import nn

from ..params import FLOAT_LIST, Param, ParamError, ParamSet
from ..surgery import SCALABLE, check_scales, rolss_scales, set_stage_scales, stages
from ..surgery import resnet as resnet_surgery
from ..surgery.vit import MODES
from ..surgery.vit import set_block_scale as set_vit_block_scale
from .base import DEFENSES, Defense, archs_of, family, skeleton

PRESETS = ("paper-text", "released")

PARAMS = ParamSet([
    Param("scales", FLOAT_LIST, None, "one skip scale per stage, input to output: 1 keeps the skips, "
          "0 removes them (RoLSS), between scales them (SSF; paper: 0.2 additive, 0.01 DenseNet); "
          "unset = RoLSS as `preset` says", min=0.0, max=1.0, optional=True, step=0.05),
    Param("preset", str, "paper-text", "RoLSS when scales is unset: 'paper-text' = the paper's text (the last "
          "stage's skips removed); 'released' = the public RoLSS code's configs (DenseNet-121/161/201: dense block "
          "2; DenseNet-169: block 1; ViT/DeiT: the first block's MLP residual (the configs' mode mlp; mode attn "
          "scales its attention residual instead; for both, give block_scales); ConvNeXt-T (timm:convnext_tiny): [0, 0, 1, 1]; ResNet-18: [1, 1, 1, 0.6]; ResNet-34/50/101/152: "
          "[1, 1, 1, 0]; MobileNetV2: [1, 1, 1, 1, 1, 1, 0] over its 7 block groups, whose last has no skip, so "
          "no skip is removed); add layer3_split for the code's ResNet layer3",
          choices=PRESETS),
    Param("layer3_split", bool, False, "ResNets only. RoLSS code as released: layer3's trailing blocks (from "
          "int(0.8 * n) on) lose their skip in every model (ResNet-18: block 1 of 2; ResNet-34/50: blocks 4-5 of "
          "6; ResNet-101: 18-22 of 23; ResNet-152: 28-35 of 36), on top of the stage scales; false = the "
          "paper's text (layer3 as the scales say)"),
    Param("block_scales", FLOAT_LIST, None, "ViT/DeiT only: one skip scale per transformer block, input to output "
          "(overrides scales; e.g. RoLSS's released ViT config removes block 1 only)", min=0.0, max=1.0,
          optional=True, step=0.05),
    Param("mode", str, "both", "ViT/DeiT only: scale the attention residual, the MLP residual, or both",
          choices=MODES),
])

RELEASED_DENSE_BLOCK = {"densenet121": 2, "densenet161": 2, "densenet201": 2, "densenet169": 1}
# the released MobileNetV2 config's skip list, one per inverted-residual setting (block group) of torchvision's
# MobileNetV2 = timm mobilenetv2_100's blocks.0..6; its 0 falls on the last group, which has no skip
RELEASED_MOBILENETV2 = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
RELEASED_CONVNEXT_TINY = [0.0, 0.0, 1.0, 1.0]  # convnext/skip.yaml line 8: stages 1 and 2 without skips
RELEASED_VIT_MODE = "mlp"  # vit/skip.yaml and deit/skip.yaml line 9 (`mode: mlp`)
LAYER3_SPLIT = 0.8  # the RoLSS code's _make_layer(..., split=0.8) for layer3 (resnet.py 222)
# the released ResNet configs' per-stage skip list (RoLSS code's `skip` argument, stage 1..4)
RELEASED_RESNET = {"resnet18": [1.0, 1.0, 1.0, 0.6], "resnet34": [1.0, 1.0, 1.0, 0.0], "resnet50": [1.0, 1.0, 1.0, 0.0],
                   "resnet101": [1.0, 1.0, 1.0, 0.0], "resnet152": [1.0, 1.0, 1.0, 0.0]}


def vit_blocks(model: nn.Module) -> list[nn.Module]:
    body = getattr(model, "body", model)
    return list(body.blocks.children())


def released_config(arch: str, fam: str, model: nn.Module) -> tuple[list[float] | None, list[float] | None]:
    """(stage scales, ViT block scales) of the public RoLSS code's released configuration for this architecture."""
    n = len(stages(model))
    if arch in RELEASED_DENSE_BLOCK:
        b = RELEASED_DENSE_BLOCK[arch]
        return [0.0 if i == b - 1 else 1.0 for i in range(n)], None
    if fam == "vit":
        k = len(vit_blocks(model))
        return None, [0.0] + [1.0] * (k - 1)
    if arch in RELEASED_RESNET:
        return list(RELEASED_RESNET[arch]), None
    if arch == "mobilenetv2":
        return released_mobilenetv2(model), None
    from ..models import arch_identity
    if arch_identity(arch) == "convnext_tiny":  # timm:convnext_tiny; the code's `if self.skip: result += input`
        return list(RELEASED_CONVNEXT_TINY), None
    known = ", ".join([*RELEASED_DENSE_BLOCK, *RELEASED_RESNET, "mobilenetv2", "timm:convnext_tiny", "vit_tiny",
                       "deit_tiny"])
    raise ParamError(f"skips preset released: the public RoLSS code has no configuration for {arch}; "
                     f"it has configs for {known}; use preset paper-text or give scales")


def released_mobilenetv2(model: nn.Module) -> list[float]:
    """The released list applied as the RoLSS code applies it: group i's blocks take skip[i], and a block
    without a residual connection (stride 2, or other channels) ignores it (mobilenetv2.py 39, 73-77).
    A group whose blocks have no skip keeps scale 1 here (mivis's scales only act on skip-bearing stages)."""
    sts = stages(model)
    if len(sts) != len(RELEASED_MOBILENETV2):
        raise ParamError(f"skips preset released: this MobileNetV2 has {len(sts)} block groups, the released "
                         f"config names {len(RELEASED_MOBILENETV2)}")
    from ..surgery.stages import carries_skip
    return [s if any(carries_skip("inverted_residual", b) for _, b in st.blocks) else 1.0
            for s, st in zip(RELEASED_MOBILENETV2, sts)]


def layer3_split_blocks(n: int) -> list[int]:
    """The layer3 blocks (of n) that the RoLSS code builds with skip 0: its _make_layer appends block 0 with
    the stage's skip, blocks 1 .. int(split * n) - 1 with it too, and blocks int(split * n) .. n - 1 with 0."""
    first = int(LAYER3_SPLIT * n)
    return list(range(max(first, 1), n))


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
        if self.p.get("layer3_split"):
            if fam != "resnet":
                raise ParamError(f"skips layer3_split: the RoLSS code's layer3 split applies to ResNets only, not "
                                 f"{self.model_cfg['arch']}; choose one of: {archs_of(('resnet',))}")
            n = len(stages(model)[2].blocks)
            if int(LAYER3_SPLIT * n) < 1:
                raise ParamError(f"skips layer3_split: this model's layer3 has {n} block; the RoLSS code's split "
                                 "needs at least 2 (with 1 it would append a second block without skip, which "
                                 "mivis does not build)")
        blocks = self.p.get("block_scales")
        if blocks is not None:
            if fam != "vit":
                raise ParamError(f"skips block_scales: per-block scales apply to ViT/DeiT only; use scales for "
                                 f"{self.model_cfg['arch']}")
        elif self.p["scales"] is None and self.p.get("preset", "paper-text") == "released":
            scales, blocks = released_config(self.model_cfg["arch"], fam, model)
            if scales is not None:
                self.p["scales"] = scales
            if blocks is not None and self.p["mode"] == "both":
                self.p["mode"] = RELEASED_VIT_MODE  # the code's ViT/DeiT configs scale the MLP residual only
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
        model = set_stage_scales(model, self.scales, mode=self.p["mode"])
        if self.p.get("layer3_split"):
            layer3 = stages(model)[2].blocks
            for j in layer3_split_blocks(len(layer3)):
                resnet_surgery.set_block_scale(layer3[j][1], 0.0, reinit_removed=True)
        return model
