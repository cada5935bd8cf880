"""Per-reconstruction measurements and their summaries with 95% identity-bootstrap intervals.

Per reconstruction: the judge's top-1/top-5 verdict, its probability of the attacked class, the
KNN feature distance (squared L2 in the judge's penultimate features to the nearest private
TRAINING image of the same identity), and p_T(y | x*). Summaries: attack accuracy top-1/top-5,
mean KNN distance, the feature Frechet distance to the attacked identities' private training
images, mean target likelihood and target success, each {"value", "lo", "hi", "n"}. Intervals: 95%
identity bootstrap; for the Frechet distance a leave-one-identity-out jackknife (the bootstrap repeats
identities and biases it upward).
"""
from __future__ import annotations

import numpy as np
import torch

from .bootstrap import bootstrap_mean, jackknife_stat
from .frechet import frechet_distance
from .judges import Judge

HIST_BINS = 20


def judge_reconstructions(judge: Judge, x: torch.Tensor, y: torch.Tensor, split) -> dict[str, np.ndarray]:
    logits, feats = judge.score(x)
    k = min(5, logits.shape[1])
    top5 = logits.topk(k, dim=1).indices
    ids = sorted(set(y.tolist()))
    priv_feats = {}
    train = split.train
    if train.streamed:  # a large folder: score only the attacked identities' images
        train = train.take(torch.isin(train.y, torch.tensor(ids)))
    _, pf = judge.score(train.x)
    for c in ids:
        priv_feats[c] = pf[train.y == c]
    knn = torch.empty(len(y))
    for c in ids:
        rows = (y == c).nonzero().flatten()
        d = torch.cdist(feats[rows].double(), priv_feats[c].double()).pow(2)
        knn[rows] = d.min(1).values.float()
    return {"top1": (top5[:, 0] == y).numpy(), "top5": (top5 == y[:, None]).any(1).numpy(),
            "prob": logits.softmax(1).gather(1, y[:, None]).squeeze(1).numpy(), "pred": top5[:, 0].numpy(),
            "knn": knn.numpy(), "_feats": feats, "_priv": priv_feats}


def summarise(verdict: dict, groups: np.ndarray, n_boot: int, seed: int) -> dict:
    out = {"attack_acc_top1": bootstrap_mean(verdict["top1"], groups, n_boot, seed),
           "attack_acc_top5": bootstrap_mean(verdict["top5"], groups, n_boot, seed),
           "knn_dist": bootstrap_mean(verdict["knn"], groups, n_boot, seed)}
    feats, priv = verdict["_feats"], verdict["_priv"]
    g = np.asarray(groups)

    def fd(ids: np.ndarray) -> float:
        a = torch.cat([feats[torch.from_numpy(g == c)] for c in ids])
        b = torch.cat([priv[int(c)] for c in ids])
        return frechet_distance(a, b)
    out["feature_frechet_distance"] = jackknife_stat(fd, groups)  # 95% jackknife over identities
    return out


def histogram(p_target: np.ndarray, correct: np.ndarray, bins: int = HIST_BINS) -> dict:
    """Counts of p_T(y|x*) on [0, 1]: all, judged correct, judged wrong (paper Fig. 2)."""
    edges = np.linspace(0, 1, bins + 1)
    c = np.asarray(correct, bool)
    return {"edges": edges.tolist(), "all": np.histogram(p_target, edges)[0].tolist(),
            "correct": np.histogram(p_target[c], edges)[0].tolist(),
            "wrong": np.histogram(p_target[~c], edges)[0].tolist()}


def evaluate(x: torch.Tensor, y: torch.Tensor, restart: torch.Tensor, p_target: torch.Tensor,
             target_pred: torch.Tensor, judges: list[Judge], split, n_boot: int = 2000, seed: int = 0,
             extra_verdicts: dict | None = None) -> dict:
    """Everything stored with an attack run: metrics (primary judge), extra judges, per-reconstruction rows."""
    groups = y.numpy()
    primary = judges[0]
    verdicts = {j.name: judge_reconstructions(j, x, y, split) for j in judges}
    v = verdicts[primary.name]
    metrics = summarise(v, groups, n_boot, seed)
    pt = p_target.numpy()
    metrics["target_likelihood"] = bootstrap_mean(pt, groups, n_boot, seed)
    metrics["target_success"] = bootstrap_mean((target_pred == y).numpy(), groups, n_boot, seed)
    extra = {}
    for j in judges[1:]:
        vj = verdicts[j.name]
        extra[j.name] = {"run": j.run.id, "arch": j.arch, "preprocess": j.preprocess,
                         "attack_acc_top1": bootstrap_mean(vj["top1"], groups, n_boot, seed),
                         "attack_acc_top5": bootstrap_mean(vj["top5"], groups, n_boot, seed),
                         "knn_dist": bootstrap_mean(vj["knn"], groups, n_boot, seed)}
    for name, ev in (extra_verdicts or {}).items():
        extra[name] = {**ev.get("info", {}),
                       "attack_acc_top1": bootstrap_mean(ev["top1"], groups, n_boot, seed)}
    rows = []
    for i in range(len(y)):
        row = {"identity": int(y[i]), "restart": int(restart[i]), "p_target": float(pt[i]),
               "target_pred": int(target_pred[i]), "eval_top1": bool(v["top1"][i]), "eval_top5": bool(v["top5"][i]),
               "eval_prob": float(v["prob"][i]), "eval_pred": int(v["pred"][i]), "knn_dist": float(v["knn"][i])}
        for j in judges[1:]:
            row[f"top1@{j.name}"] = bool(verdicts[j.name]["top1"][i])
        for name, ev in (extra_verdicts or {}).items():
            row[f"top1@{name}"] = bool(ev["top1"][i])
        rows.append(row)
    return {"judge": {"name": primary.name, "run": primary.run.id, "arch": primary.arch},
            "metrics": metrics, "extra_judges": extra, "histogram": histogram(pt, v["top1"]),
            "per_reconstruction": rows, "n_boot": n_boot, "bootstrap_seed": seed,
            "interval": "95% percentile bootstrap over identities"}
