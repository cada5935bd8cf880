"""Evaluation models ("judges"): loading with the protocol's refusals, and a lighting-normalised view.

The primary judge E is a classifier trained on the private identities, never the target, of a
different architecture. Extra judges (another family, or one trained on lighting-normalised
images) score the same reconstructions to show hits are not lighting matches.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from ..data import sequential
from ..device import autocast, to_device
from ..models import ARCHITECTURES, same_architecture
from ..params import ParamError
from ..runs import RunRecord, Workspace

PREPROCESS = ("none", "histeq")


def family(arch: str) -> str:
    return ARCHITECTURES.get(arch).meta.get("family", arch)


def histeq(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Per-image, per-channel histogram equalisation of [-1, 1] images (lighting normalisation)."""
    n, c = x.shape[:2]
    flat = ((x.float().clamp(-1, 1) + 1) * 127.5).round().long().flatten(2)  # (n, c, hw)
    hist = torch.zeros(n, c, bins, device=x.device).scatter_add_(2, flat, torch.ones_like(flat, dtype=torch.float))
    cdf = hist.cumsum(2)
    cmin = torch.where(hist > 0, cdf, torch.full_like(cdf, float("inf"))).amin(2, keepdim=True)
    total = cdf[:, :, -1:]
    lut = ((cdf - cmin) / (total - cmin).clamp_min(1)).clamp(0, 1)
    return (lut.gather(2, flat) * 2 - 1).view_as(x)


@dataclass
class Judge:
    name: str
    run: RunRecord
    model: torch.nn.Module
    device: torch.device
    preprocess: str = "none"

    @property
    def arch(self) -> str:
        return self.run.config["model"]["arch"]

    @torch.no_grad()
    def score(self, x: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, penultimate features) for [-1, 1] images, float32 on the CPU."""
        logits, feats = [], []
        for xb in sequential(x, batch, self.device):
            xb = to_device(xb, self.device)
            if self.preprocess == "histeq":
                xb = histeq(xb)
            with autocast(self.device, enabled=False):  # fp32 verdicts: the same on every device
                f = self.model.embed(xb)
                lg = self.model.head(f)
            logits.append(lg.float().cpu())
            feats.append(f.float().cpu())
        return torch.cat(logits), torch.cat(feats)


def _private(rec: RunRecord) -> list[str] | None:
    try:
        return json.loads(rec.file("split.json").read_text())["private"]
    except (OSError, ValueError, KeyError):
        return None


def check_judge(ws: Workspace, eval_run: str, target: RunRecord) -> RunRecord:
    rec = ws.get(eval_run)
    if rec.id == target.id:
        raise ParamError(f"run {rec.id} is the target itself; the evaluation model must never be the target")
    if rec.kind != "eval":
        raise ParamError(f"run {rec.id} is a {rec.kind} run; the evaluation model must be a classifier trained on "
                         "the private identities (train one with --role eval)")
    if rec.status != "done":
        raise ParamError(f"evaluation run {rec.id} is {rec.status}; only finished classifiers can judge")
    m, tm = rec.config["model"], target.config["model"]
    if same_architecture(m["arch"], tm["arch"]):  # 'convnext_atto' and 'timm:convnext_atto' are one architecture
        others = ", ".join(a for a in ARCHITECTURES.names(any_timm=None) if not same_architecture(a, tm["arch"]))
        same = m["arch"] if m["arch"] == tm["arch"] else f"{m['arch']} (the same architecture as {tm['arch']})"
        raise ParamError(f"evaluation model {rec.id} is a {same} like the target {target.id}; the protocol "
                         f"needs a different architecture (e.g. {others.split(', ')[0]}; allowed: {others})")
    if m["num_classes"] != tm["num_classes"] or (adaptation(rec, target) is None and (m["img_size"], m["in_chans"])
                                                 != (tm["img_size"], tm["in_chans"])):
        raise ParamError(f"evaluation model {rec.id} takes {m['img_size']} px x {m['in_chans']} channel(s) with "
                         f"{m['num_classes']} classes; the target {tm['img_size']} px x {tm['in_chans']} with "
                         f"{tm['num_classes']} (another size or channel count is adapted only when both were "
                         "trained on the same split of the same data)")
    same_split = rec.data_fingerprint == target.data_fingerprint or adaptation(rec, target) is not None
    if not same_split or _private(rec) != _private(target):
        raise ParamError(f"evaluation model {rec.id} was trained on another data split than target {target.id}")
    return rec


def _split_key(cfg: dict) -> dict:
    return {k: v for k, v in (cfg or {}).items() if k not in ("image_size", "channels")}


def adaptation(rec: RunRecord, target: RunRecord) -> str | None:
    """Words for how an evaluation model of another image size / channel count judges this target ('64 px
    resized to 32 px, RGB averaged to grayscale'), when both were trained on the same split of the same data
    (the same identities, training and held-out images; only the images' size or channels differ); else None.
    The conversion is mivis.priors.adapt.convert."""
    from ..priors.adapt import describe
    m, tm = rec.config["model"], target.config["model"]
    if (m["img_size"], m["in_chans"]) == (tm["img_size"], tm["in_chans"]):
        return None
    if _split_key(rec.config.get("data")) != _split_key(target.config.get("data")):
        return None
    if _private(rec) is None or _private(rec) != _private(target):
        return None
    return describe(tm["img_size"], tm["in_chans"], m["img_size"], m["in_chans"])


class AdaptedJudgeModel(torch.nn.Module):
    """An evaluation model fed the target's images converted to its own size and channels."""

    def __init__(self, model: torch.nn.Module, size: int, channels: int):
        super().__init__()
        self.inner, self.size, self.channels, self.head = model, size, channels, model.head

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        from ..priors.adapt import convert
        return self.inner.embed(convert(x, self.channels, self.size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def pick_eval_run(ws: Workspace, target: RunRecord) -> str:
    """The newest finished eval run that may judge this target (different architecture, same split)."""
    for rec in ws.list(kind="eval", status="done"):
        try:
            check_judge(ws, rec.id, target)
            return rec.id
        except ParamError:
            continue
    raise ParamError(f"no evaluation model can judge target {target.id}: train one on the same data with another "
                     f"architecture, e.g. `python -m mivis train --role eval --arch vgg11 --lr 1e-3`")


def load_judge(ws: Workspace, eval_run: str, target: RunRecord, device, name: str | None = None) -> Judge:
    from ..train import load_classifier
    rec = check_judge(ws, eval_run, target)
    model, _ = load_classifier(ws, rec.id, device)
    model.requires_grad_(False)
    pre = rec.config.get("preprocess", "none")
    label = name or f"{rec.config['model']['arch']}:{rec.id}"
    how = adaptation(rec, target)
    if how:  # the same split at another size / channel count: converted input, and said in its name
        m = rec.config["model"]
        model, label = AdaptedJudgeModel(model, m["img_size"], m["in_chans"]), f"{label} (adapted: {how})"
    return Judge(label, rec, model, next(model.parameters()).device, pre)
