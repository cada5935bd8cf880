"""Where the stages and blocks of each supported timm family are, and which blocks carry a skip.

A stage is a group of blocks at one resolution (ResNet layer1..4, DenseNet dense blocks,
EfficientNet/MobileNetV2 timm stages, VGG conv blocks, RepVGG stages) or, for ViT, one of four
equal groups of encoder blocks. `output` is the module whose output is the stage's output
(forward hooks of BiDO use it).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from . import densenet, inverted, resnet, vit

VIT_GROUPS = 4  # ViT/DeiT blocks are grouped in four, so a 4-number scale list reads like ResNet's


@dataclass
class Stage:
    name: str
    output: nn.Module
    blocks: list[tuple[str, nn.Module]]


def body_of(model: nn.Module) -> nn.Module:
    return getattr(model, "body", model)


def family_of(model: nn.Module) -> str:
    from timm.models.byobnet import ByobNet
    from timm.models.densenet import DenseNet
    from timm.models.efficientnet import EfficientNet
    from timm.models.resnet import ResNet
    from timm.models.vgg import VGG
    from timm.models.vision_transformer import VisionTransformer
    body = body_of(model)
    for cls, fam in ((ResNet, "resnet"), (DenseNet, "densenet"), (EfficientNet, "inverted_residual"),
                     (VisionTransformer, "vit"), (VGG, "vgg"), (ByobNet, "repvgg")):
        if isinstance(body, cls):
            return fam
    raise TypeError(f"no stage map for {type(body).__name__}")


def _children(prefix: str, seq: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(f"{prefix}.{n}", m) for n, m in seq.named_children()]


def stages(model: nn.Module) -> list[Stage]:
    body, fam = body_of(model), family_of(model)
    if fam == "resnet":
        return [Stage(f"layer{i}", getattr(body, f"layer{i}"), _children(f"layer{i}", getattr(body, f"layer{i}")))
                for i in range(1, 5)]
    if fam == "densenet":
        return [Stage(f"features.{n}", m, _children(f"features.{n}", m))
                for n, m in body.features.named_children() if densenet.is_block(m)]
    if fam == "inverted_residual":
        return [Stage(f"blocks.{i}", s, _children(f"blocks.{i}", s)) for i, s in enumerate(body.blocks)]
    if fam == "repvgg":
        return [Stage(f"stages.{i}", s, _children(f"stages.{i}", s)) for i, s in enumerate(body.stages)]
    if fam == "vit":
        blocks = _children("blocks", body.blocks)
        n, out, start = len(blocks), [], 0
        for g in range(VIT_GROUPS):
            end = start + n // VIT_GROUPS + (1 if g < n % VIT_GROUPS else 0)
            group = blocks[start:end]
            out.append(Stage(f"blocks.{start}-{end - 1}", group[-1][1], group))
            start = end
        return out
    # vgg: a stage is the run of convs ending at a max-pool
    out, cur = [], []
    for n, m in body.features.named_children():
        if isinstance(m, nn.Conv2d):
            cur.append((f"features.{n}", m))
        elif isinstance(m, nn.MaxPool2d):
            out.append(Stage(f"features.{cur[0][0].split('.')[1]}-{n}", m, cur))
            cur = []
    return out


def carries_skip(family: str, block: nn.Module, index: int = 0) -> bool:
    """Whether this block has a skip that a scale can act on (in the unmodified model)."""
    if family == "resnet":
        return True
    if family == "inverted_residual":
        return inverted.carries_skip(block)
    if family == "vit":
        return True
    if family == "densenet":
        return index > 0  # layers after the first also receive earlier maps, not only the last one
    if family == "repvgg":
        return getattr(block, "identity", None) is not None
    return False


def skip_kind(family: str) -> str:
    return {"resnet": "additive", "inverted_residual": "additive", "vit": "additive",
            "densenet": "concatenative", "repvgg": "re-parameterisable identity", "vgg": "none"}[family]


def block_scale(family: str, block: nn.Module, mode: str = "both") -> float | None:
    if family == "resnet":
        return resnet.scale_of(block)
    if family == "inverted_residual":
        return inverted.scale_of(block) if inverted.carries_skip(block) else None
    if family == "vit":
        return vit.scale_of(block, mode)
    return None
