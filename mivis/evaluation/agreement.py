"""Do the judges agree? E (the evaluation model) against judges that never saw the private data as a
classifier: dlib's face embedding (1-NN) and humans (the "Be the judge" votes).

E and the target learned from the same private images, so a reconstruction can fool both without
resembling the person (a Type-I adversarial image). E's false-positive share against judge J is the share
of the reconstructions E calls correct that J calls wrong. Every number has a 95% bootstrap over identities.

Units: E vs dlib compare per reconstruction. Humans vote on one reconstruction per identity (votes.py); a
machine judge vs humans compares per vote, with the machine's verdict on the voted reconstruction.
"""
from __future__ import annotations

import numpy as np

from .bootstrap import _ci, _group_index, _resamples, bootstrap_mean, metric

E = "E"
HUMANS = "humans"


def ratio(num, den, groups, n_boot: int = 2000, seed: int = 0) -> dict:
    """sum(num) / sum(den) with a 95% bootstrap over groups (identities); None when den is 0."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    uniq, inv = _group_index(groups)
    sn = np.bincount(inv, weights=num, minlength=len(uniq))
    sd = np.bincount(inv, weights=den, minlength=len(uniq))
    if sd.sum() == 0:
        return metric(np.nan, np.nan, np.nan, 0)
    idx = _resamples(len(uniq), n_boot, seed)
    bn, bd = sn[idx].sum(1), sd[idx].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = np.where(bd > 0, bn / np.where(bd > 0, bd, 1), np.nan)
    return metric(sn.sum() / sd.sum(), *_ci(boot), int((sd > 0).sum()))


def pair(a, b, groups, n_boot: int = 2000, seed: int = 0) -> dict:
    """Two judges' verdicts (bool per unit): agreement, the 2x2 counts, and a's false-positive share vs b."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return {"n": int(len(a)), "agree": bootstrap_mean(a == b, groups, n_boot, seed),
            "both_correct": int((a & b).sum()), "only_a": int((a & ~b).sum()), "only_b": int((~a & b).sum()),
            "both_wrong": int((~a & ~b).sum()),
            "a_false_positive": ratio(a & ~b, a, groups, n_boot, seed)}


def machine_verdicts(rows: list[dict]) -> dict[str, np.ndarray]:
    """Per-reconstruction verdicts stored in evaluation.json: E, then every extra judge (dlib, ...)."""
    out = {E: np.array([r["eval_top1"] for r in rows], bool)}
    for key in (rows[0] if rows else {}):
        if key.startswith("top1@") and all(key in r for r in rows):
            out[key.split("@", 1)[1]] = np.array([r[key] for r in rows], bool)
    return out


def judge_table(rows: list[dict], human_votes: list[dict] | None = None, item_rows: list[int] | None = None,
                machine_items: dict[str, list] | None = None, n_boot: int = 2000, seed: int = 0) -> dict:
    """Accuracy per judge and every pair's agreement, with E's false-positive share against each other judge.

    rows: evaluation.json's per_reconstruction (may be empty, e.g. the demo). human_votes: votes.votes(...)
    rows (item, identity, correct). item_rows: the evaluation row of each voted item; or machine_items:
    judge -> verdict per item directly (the demo stores only E's verdict on each shown item).
    """
    out: dict = {"accuracy": {}, "pairs": []}
    mv = machine_verdicts(rows) if rows else {}
    groups = np.array([r["identity"] for r in rows]) if rows else np.array([])
    for j, v in mv.items():
        out["accuracy"][j] = bootstrap_mean(v, groups, n_boot, seed) | {"unit": "reconstruction"}
    names = list(mv)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out["pairs"].append({"a": a, "b": b, "unit": "reconstruction", **pair(mv[a], mv[b], groups, n_boot, seed)})
    if human_votes:
        hv = np.array([bool(v["correct"]) for v in human_votes])
        hg = np.array([v["identity"] for v in human_votes])
        out["accuracy"][HUMANS] = bootstrap_mean(hv, hg, n_boot, seed) | {"unit": "vote"}
        per_item: dict[str, list] = {}
        if item_rows is not None and mv:
            per_item = {j: [bool(v[r]) for r in item_rows] for j, v in mv.items()}
        for j, verdicts in (machine_items or {}).items():
            per_item.setdefault(j, verdicts)
            known = [i for i, x in enumerate(verdicts) if x is not None]
            if j not in out["accuracy"] and known:  # e.g. the demo: E's verdict on each shown item only
                out["accuracy"][j] = bootstrap_mean([bool(verdicts[i]) for i in known], known, n_boot, seed) | \
                    {"unit": "shown item"}
        for j, verdicts in per_item.items():
            m = [verdicts[v["item"]] for v in human_votes]
            keep = np.array([x is not None for x in m])
            if keep.any():
                out["pairs"].append({"a": j, "b": HUMANS, "unit": "vote",
                                     **pair(np.array(m, dtype=object)[keep].astype(bool), hv[keep], hg[keep],
                                            n_boot, seed)})
    out["judges"] = list(out["accuracy"])
    return out


def e_false_positive(table: dict) -> dict[str, dict]:
    """judge -> share of E's 'correct' verdicts that this independent judge calls wrong."""
    return {p["b"]: p["a_false_positive"] | {"unit": p["unit"]} for p in table["pairs"] if p["a"] == E}
