"""Read-side helpers over stored attack runs: histograms across runs, attributions per identity."""
from __future__ import annotations

import numpy as np
import torch

from ..params import ParamError
from ..runs import RunRecord, Workspace


def _attack(ws: Workspace, run_id: str) -> RunRecord:
    rec = ws.get(run_id)
    if rec.kind != "attack" or rec.status != "done":
        raise ParamError(f"run {run_id} is a {rec.status} {rec.kind} run; a finished attack run is needed")
    return rec


def likelihood_histograms(ws: Workspace, attack_runs: list[str], bins: int = 20) -> list[dict]:
    """Per attack run: p_T(y|x*) counts on [0, 1], all / judged correct / judged wrong (paper Fig. 2)."""
    from ..evaluation.metrics import histogram
    out = []
    for rid in attack_runs:
        rec = _attack(ws, rid)
        rows = rec.read_json("evaluation.json")["per_reconstruction"]
        p = np.array([r["p_target"] for r in rows], dtype=np.float64)
        c = np.array([r["eval_top1"] for r in rows], dtype=bool)
        h = histogram(p, c, bins)
        high = p >= 0.9
        h.update(run=rid, name=rec.name, n=int(len(p)), n_correct=int(c.sum()),
                 high_likelihood=int(high.sum()), high_likelihood_wrong=int((high & ~c).sum()))
        out.append(h)
    return out


def attribution_pair(ws: Workspace, attack_run: str, identity: int, method: str = "occlusion",
                     index: int = 0, device: str = "cpu") -> dict:
    """Attribution maps for the attacked class on one reconstruction of `identity` and on a real
    private training image of the same identity (arrays (H, W), plus the images in [-1, 1])."""
    from ..data import load_split
    from ..train import load_classifier
    from .attributions import attribute, corner_share, display_scale
    rec = _attack(ws, attack_run)
    t = rec.read_tensors("reconstructions.safetensors")
    rows = (t["y"] == identity).nonzero().flatten()
    if len(rows) == 0:
        raise ParamError(f"attack run {attack_run} has no reconstruction of identity {identity}; "
                         f"attacked: {sorted(set(t['y'].tolist()))}")
    if not 0 <= index < len(rows):
        raise ParamError(f"index {index} out of range: identity {identity} has {len(rows)} reconstructions")
    model, target = load_classifier(ws, rec.config["target_run"], device)
    model = model.float()
    split = load_split(target.config["data"])
    recon = t["x"][rows[index]].float()[None]
    real = split.private_images(identity, "train")[:1]
    maps = attribute(model, torch.cat([recon, real]), identity, method)
    return {"identity": identity, "method": method, "reconstruction": recon[0].numpy(), "real": real[0].numpy(),
            "map_reconstruction": maps[0], "map_real": maps[1],
            # what the display does with the maps, so the page can say it in words
            "corner_share": [corner_share(m) for m in maps], "saturated": [display_scale(m)[1] for m in maps]}
