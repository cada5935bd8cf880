"""Where the stages and blocks of each supported timm family are, and which blocks carry a skip.

A stage is a group of blocks at one resolution (ResNet layer1..4, DenseNet dense blocks,
EfficientNet/MobileNet timm stages, VGG conv blocks, RepVGG stages) or, for ViT, one of four
equal groups of encoder blocks. Any other timm model (ConvNeXt, RegNet, Swin, ByobNet, and
"generic" for block types mivis has no skip rule for) takes its stages from the model's own
`feature_info`. `output` is the module whose output is the stage's output (forward hooks of
BiDO use it).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from . import densenet, inverted, resnet, shortcut, swin, vit
from .skippath import SkipPath

VIT_GROUPS = 4  # ViT/DeiT blocks are grouped in four, so a 4-number scale list reads like ResNet's


@dataclass
class Stage:
    name: str
    output: nn.Module
    blocks: list[tuple[str, nn.Module]]


def body_of(model: nn.Module) -> nn.Module:
    return getattr(model, "body", model)


def family_of(model: nn.Module) -> str:
    from timm.models.byobnet import ByobNet, MobileOneBlock, RepVggBlock
    from timm.models.convnext import ConvNeXt
    from timm.models.densenet import DenseNet
    from timm.models.efficientnet import EfficientNet
    from timm.models.mobilenetv3 import MobileNetV3
    from timm.models.regnet import RegNet
    from timm.models.resnet import ResNet
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vgg import VGG
    from timm.models.vision_transformer import VisionTransformer
    body = body_of(model)
    if isinstance(body, ByobNet):  # RepVGG/MobileOne re-parameterise; the others add a shortcut module
        return "repvgg" if any(isinstance(m, (RepVggBlock, MobileOneBlock)) for m in body.modules()) else "byobnet"
    for cls, fam in ((ResNet, "resnet"), (DenseNet, "densenet"), (EfficientNet, "inverted_residual"),
                     (MobileNetV3, "inverted_residual"), (VisionTransformer, "vit"), (VGG, "vgg"),
                     (ConvNeXt, "convnext"), (RegNet, "regnet"), (SwinTransformer, "swin")):
        if isinstance(body, cls):
            return fam
    return "generic"


# families whose stages come from the model's feature_info, and the skip rule of their blocks
FEATURE_FAMILIES = ("convnext", "regnet", "swin", "byobnet", "generic")


def known_block(family: str, block: nn.Module) -> bool:
    """Whether mivis has a skip rule for this block (it knows if and where the block adds a skip)."""
    if family in ("convnext", "regnet", "byobnet", "generic") and shortcut.is_block(block):
        return True
    if family in ("swin", "generic") and swin.is_block(block):
        return True
    if family == "vit":
        return vit.is_block(block) and type(block).__name__ in ("Block", "ScaledBlock")
    if family == "inverted_residual":
        return inverted.is_block(block)
    return family in ("resnet", "densenet", "vgg", "repvgg")


def _known_anywhere(m: nn.Module) -> bool:
    return shortcut.is_block(m) or swin.is_block(m)


def _find_blocks(prefix: str, m: nn.Module) -> list[tuple[str, nn.Module]]:
    """Blocks mivis has a skip rule for inside `m` (outermost only), in registration order."""
    if _known_anywhere(m):
        return [(prefix, m)]
    out = []
    for n, c in m.named_children():
        out += _find_blocks(f"{prefix}.{n}" if prefix else n, c)
    return out


def _feature_stages(body: nn.Module, family: str) -> list[Stage]:
    """Stages from timm's feature_info: each feature level takes the known blocks registered up to the
    end of its module (so a level named after a final conv, as in ByobNet, still gets its stage's
    blocks). Levels without such blocks (stems) are left out, except for generic models, whose levels
    take their modules' children as (unknown) blocks."""
    info = [f for f in (getattr(body, "feature_info", None) or []) if isinstance(f, dict) and f.get("module")]
    names = [n for n, _ in body.named_modules()]
    mods = dict(body.named_modules())
    pos = {n: k for k, n in enumerate(names)}

    def end(name: str) -> int:  # index of the last module inside `name` (pre-order)
        k = pos[name]
        while k + 1 < len(names) and names[k + 1].startswith(name + "."):
            k += 1
        return k
    levels = [f["module"] for f in info if f["module"] in pos]
    known = _find_blocks("", body)
    out, taken = [], 0
    for k, name in enumerate(levels):
        m, stop = mods[name], end(name)
        blocks = []
        while taken < len(known) and pos[known[taken][0]] <= stop:
            blocks.append(known[taken])
            taken += 1
        if not blocks and family == "generic" and any(True for _ in m.parameters()) \
                and not (k == 0 and info[k].get("reduction", 4) <= 2 and len(levels) > 1):
            parent = mods[name.rsplit(".", 1)[0]] if "." in name else body
            if isinstance(parent, (nn.Sequential, nn.ModuleList)) and not hasattr(m, "blocks"):
                blocks = [(name, m)]  # the level is one block of a sequence (e.g. MLP-Mixer's blocks.i)
            else:
                inner = getattr(m, "blocks", m)
                pre = name if inner is m else f"{name}.blocks"
                blocks = [(f"{pre}.{n}", c) for n, c in inner.named_children()
                          if any(True for _ in c.parameters())] or [(name, m)]
        if blocks:
            parent = blocks[0][0].rsplit(".", 1)[0]
            inside = blocks[0][0].startswith(name + ".")
            out.append(Stage(name if inside or not parent else parent, m, blocks))
    if not out:  # no usable feature_info: the whole body is one stage of its top-level children
        kids = [(n, c) for n, c in body.named_children() if any(True for _ in c.parameters())]
        out.append(Stage("body", body, kids or [("body", body)]))
    return out


def _children(prefix: str, seq: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(f"{prefix}.{n}", m) for n, m in seq.named_children()]


def stages(model: nn.Module) -> list[Stage]:
    body, fam = body_of(model), family_of(model)
    if fam in FEATURE_FAMILIES:
        return _feature_stages(body, fam)
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
    if not known_block(family, block):
        return False
    if family == "resnet":
        return True
    if family == "inverted_residual":
        return inverted.carries_skip(block)
    if family == "vit":
        return True
    if shortcut.is_block(block):
        return shortcut.carries_skip(block)
    if swin.is_block(block):
        return True
    if family == "densenet":
        return index > 0  # layers after the first also receive earlier maps, not only the last one
    if family == "repvgg":
        return getattr(block, "identity", None) is not None
    return False


def skip_kind(family: str) -> str:
    return {"resnet": "additive", "inverted_residual": "additive", "vit": "additive", "convnext": "additive",
            "regnet": "additive", "swin": "additive", "byobnet": "additive",
            "densenet": "concatenative", "repvgg": "re-parameterisable identity", "vgg": "none",
            "generic": "unknown"}[family]


def block_scale(family: str, block: nn.Module, mode: str = "both") -> float | None:
    if family == "resnet":
        return resnet.scale_of(block)
    if family == "inverted_residual":
        return inverted.scale_of(block) if inverted.carries_skip(block) else None
    if family == "vit":
        return vit.scale_of(block, mode)
    if shortcut.is_block(block):
        return shortcut.scale_of(block)
    if swin.is_block(block):
        return swin.scale_of(block, mode)
    return None


def skip_path(family: str, block: nn.Module) -> SkipPath | None:
    """Where this block adds its skip and what it adds (see skippath.py), for every additive skip mivis has a
    rule for; None for blocks without one (no skip, an unknown block type, DenseNet's concatenation, RepVGG's
    re-parameterisable identity)."""
    if not known_block(family, block):
        return None
    if family == "resnet":
        return resnet.skip_path(block)
    if family == "inverted_residual":
        return inverted.skip_path(block)
    if family == "vit":
        return vit.skip_path(block)
    if shortcut.is_block(block):
        return shortcut.skip_path(block)
    if swin.is_block(block):
        return swin.skip_path(block)
    return None
