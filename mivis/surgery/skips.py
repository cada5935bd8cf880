"""Per-stage skip scales: validate, apply and describe (one scale s in [0, 1] per stage).

s = 1 keeps a stage's skips, s = 0 removes them (RoLSS), values between scale them (SSF).
`describe` is JSON-able: the UI draws its stage diagram from it.
"""
from __future__ import annotations

from torch import nn

from ..params import ParamError
from . import densenet, inverted, resnet, shortcut, swin, vit
from .stages import block_scale, body_of, carries_skip, family_of, known_block, skip_kind, stages

SCALABLE = ("resnet", "densenet", "inverted_residual", "vit", "convnext", "regnet", "swin", "byobnet")


def _n(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def toggleable(model: nn.Module) -> list[int]:
    """Indices of stages with at least one skip-bearing block (the only ones a scale acts on)."""
    fam = family_of(model)
    if fam not in SCALABLE:
        return []
    return [i for i, st in enumerate(stages(model))
            if any(carries_skip(fam, b, j) for j, (_, b) in enumerate(st.blocks))]


def rolss_scales(model: nn.Module) -> list[float]:
    """All skips kept except the last skip-bearing stage's (RoLSS)."""
    tog = toggleable(model)
    if not tog:
        raise ParamError(f"{family_of(model)} models have no skip connections to remove")
    return [0.0 if i == tog[-1] else 1.0 for i in range(len(stages(model)))]


def check_scales(model: nn.Module, scales: list[float]) -> list[float]:
    """Refuse impossible scale lists with a message that names what is allowed."""
    fam = family_of(model)
    if fam not in SCALABLE:
        raise ParamError(f"skips: {fam} models have no scalable skip connections; "
                         f"skip scaling supports the {', '.join(SCALABLE)} families")
    sts, tog = stages(model), toggleable(model)
    if not tog:
        unknown = ", ".join(sorted({u["type"] for u in describe(model)["uncontrolled"]})) or "its blocks"
        raise ParamError(f"skips: no stage of this {fam} model has a skip mivis can scale ({unknown}: "
                         "no skip rule); it can be trained and attacked with its skips as they are")
    names = ", ".join(s.name for s in sts)
    example = ",".join("0" if i == tog[-1] else "1" for i in range(len(sts)))
    if len(scales) != len(sts):
        raise ParamError(f"skips scales: {len(scales)} given, but this model has {len(sts)} stages "
                         f"({names}); give {len(sts)} numbers in [0, 1], e.g. {example}")
    for i, s in enumerate(scales):
        if not 0.0 <= s <= 1.0:
            raise ParamError(f"skips scales: {s:g} for stage {sts[i].name} is outside the allowed range [0, 1]")
        if i not in tog and s != 1.0:
            raise ParamError(f"skips scales: stage {i + 1} ({sts[i].name}) has no block with a skip, so its "
                             f"scale must be 1; stages with skips: {', '.join(str(t + 1) for t in tog)}")
    return [float(s) for s in scales]


def set_stage_scales(model: nn.Module, scales: list[float], *, mode: str = "both",
                     reinit_removed: bool = True) -> nn.Module:
    """Apply one scale per stage in place; for DenseNet the Classifier's head follows the new width.

    reinit_removed: set the zero-initialised last BN of ResNet blocks whose skip is removed to 1
    (right for a fresh model; TTS switches a trained model and passes False).
    """
    scales = check_scales(model, scales)
    fam, body = family_of(model), body_of(model)
    if fam == "densenet":
        width = densenet.set_scales(body, scales)
        if model is not body and getattr(model, "num_features", width) != width:
            model.num_features = width
            model.head = nn.Linear(width, model.num_classes)
        return model
    # every skip-bearing block takes the scaled forward, s = 1 included: one code path to test
    for st, s in zip(stages(model), scales):
        for _, block in st.blocks:
            if fam == "resnet":
                resnet.set_block_scale(block, s, reinit_removed)
            elif not carries_skip(fam, block):
                continue  # a block without a skip, or one mivis has no rule for (describe says which)
            elif fam == "inverted_residual":
                inverted.set_block_scale(block, s)
            elif shortcut.is_block(block):
                shortcut.set_block_scale(block, s, reinit_removed)
            elif swin.is_block(block):
                swin.set_block_scale(block, s, mode)
            else:
                vit.set_block_scale(block, s, mode)
    return model


def stage_scales(model: nn.Module, mode: str = "both") -> list[float | None]:
    """Current scale per stage (None for a stage without skips)."""
    return [st["scale"] for st in describe(model, mode)["stages"]]


def describe(model: nn.Module, mode: str = "both") -> dict:
    """Stages, their blocks, which carry a skip, current scales and parameter counts."""
    fam = family_of(model)
    out = []
    for i, st in enumerate(stages(model)):
        blocks = []
        for j, (name, b) in enumerate(st.blocks):
            skip = carries_skip(fam, b, j)
            row = {"name": name, "type": type(b).__name__.removeprefix("Scaled"), "skip": skip,
                   "scale": block_scale(fam, b, mode) if skip else None, "params": _n(b),
                   "known": known_block(fam, b)}
            if fam == "densenet":
                row.update(in_channels=b.conv1.in_channels, out_channels=b.conv2.out_channels)
            blocks.append(row)
        has = any(b["skip"] for b in blocks)
        scale = densenet.scale_of(st.output) if fam == "densenet" else \
            (min(b["scale"] for b in blocks if b["skip"]) if has and fam in SCALABLE else None)
        row = {"index": i, "name": st.name, "has_skip": has, "toggleable": has and fam in SCALABLE,
               "scale": scale, "params": sum(b["params"] for b in blocks), "blocks": blocks}
        if fam == "densenet":
            row["out_channels"] = densenet.block_out_width(
                blocks[0]["in_channels"], blocks[0]["out_channels"], len(blocks), scale)
        out.append(row)
    return {"family": fam, "skip_kind": skip_kind(fam), "mode": mode if fam in ("vit", "swin") else None,
            "params": _n(model), "stages": out, "toggleable": [s["index"] for s in out if s["toggleable"]],
            "uncontrolled": uncontrolled(out)}


def uncontrolled(stage_rows: list[dict]) -> list[dict]:
    """Block types whose skips mivis cannot control, with the reason (for the UI, in plain words)."""
    counts: dict[str, int] = {}
    for st in stage_rows:
        for b in st["blocks"]:
            if not b["known"]:
                counts[b["type"]] = counts.get(b["type"], 0) + 1
    return [{"type": t, "blocks": n,
             "why": f"mivis has no skip rule for {t} blocks: it does not know whether or where their forward "
                    "adds its input back, so any skip they have stays as trained and cannot be scaled or removed "
                    "(the model can still be trained, attacked and analysed per stage)"}
            for t, n in counts.items()]
