"""What KEDMI and PLG-MI add to the GAN loop: the target's soft labels / pseudo-labels."""
from __future__ import annotations

import torch

from ..params import ParamError
from .gan_train import Variant


@torch.no_grad()
def target_softmax(model, x: torch.Tensor, device, batch: int = 256) -> torch.Tensor:
    from ..data import sequential
    from ..device import autocast, to_device
    out = []
    for xb in sequential(x, batch, device):
        with autocast(device):
            out.append(model(to_device(xb, device)).float().softmax(1).cpu())
    return torch.cat(out)


def pseudo_label(probs: torch.Tensor, top_k: int) -> torch.Tensor:
    """PLG-MI's top-k selection: for every class, the k public images the target is most sure of.

    Returns (M, 2) rows [public index, class]; an image may serve several classes (as in PLG-MI).
    """
    k = min(top_k, probs.shape[0])
    idx = probs.topk(k, dim=0).indices  # (k, K)
    cls = torch.arange(probs.shape[1]).expand(k, -1)
    return torch.stack([idx.flatten(), cls.flatten()], 1)


def build_variant(ptype: str, p: dict, split, ws, target, device) -> Variant:
    if ptype == "gmi":
        return Variant()
    from ..train import load_classifier
    model, rec = load_classifier(ws, target.id, device)
    model.requires_grad_(False)
    if rec.config["model"]["num_classes"] != split.num_classes:
        raise ParamError(f"target {rec.id} has {rec.config['model']['num_classes']} classes, the split "
                         f"{split.num_classes}")
    probs = target_softmax(model, split.public.x, device)
    if ptype == "kedmi":
        return Variant(soft_labels=probs, cls_weight=p["cls_weight"], entropy_weight=p["entropy_weight"],
                       fm_weight=p["fm_weight"], num_classes=split.num_classes,
                       objective=p.get("objective", "hinge-nonpaper"))
    return Variant(pairs=pseudo_label(probs, p["top_k"]), target=model, inv_weight=p["inv_weight"],
                   num_classes=split.num_classes)
