"""Comparing attack runs: paired differences of a metric, and Delta = AttAcc drop / Acc drop.

Both read the per-reconstruction rows stored in each attack run's evaluation.json.
"""
from __future__ import annotations

import json

import numpy as np

from ..params import ParamError
from ..runs import RunRecord, Workspace
from .bootstrap import paired_difference, ratio_difference

PER_SAMPLE = {"attack_acc_top1": "eval_top1", "attack_acc_top5": "eval_top5", "knn_dist": "knn_dist",
              "target_likelihood": "p_target"}


def load_evaluation(ws: Workspace, run_id: str) -> tuple[RunRecord, dict]:
    rec = ws.get(run_id)
    if rec.kind != "attack":
        raise ParamError(f"run {run_id} is a {rec.kind} run, not an attack run")
    if rec.status != "done":
        raise ParamError(f"attack run {run_id} is {rec.status}")
    try:
        return rec, json.loads(rec.file("evaluation.json").read_text())
    except (OSError, ValueError) as e:
        raise ParamError(f"attack run {run_id} has no readable evaluation.json ({e})") from None


def _values(ev: dict, metric: str) -> tuple[np.ndarray, np.ndarray]:
    rows = ev["per_reconstruction"]
    if metric == "target_success":
        vals = [r["target_pred"] == r["identity"] for r in rows]
    elif metric in PER_SAMPLE:
        vals = [r[PER_SAMPLE[metric]] for r in rows]
    elif metric.startswith("attack_acc_top1@"):
        vals = [r[f"top1@{metric.split('@', 1)[1]}"] for r in rows]
    else:
        raise ParamError(f"metric {metric!r} cannot be compared per identity; choose one of "
                         f"{', '.join(list(PER_SAMPLE) + ['target_success'])}")
    return np.asarray(vals, float), np.asarray([r["identity"] for r in rows])


def compare_runs(ws: Workspace, run_a: str, run_b: str, metric: str = "attack_acc_top1", n_boot: int = 2000,
                 seed: int = 0) -> dict:
    """Paired difference a - b over the same identities, with its 95% interval and 'resolved'."""
    ra, ea = load_evaluation(ws, run_a)
    rb, eb = load_evaluation(ws, run_b)
    ia, ib = ra.config["attack"]["params"], rb.config["attack"]["params"]
    if sorted(ia["identities"]) != sorted(ib["identities"]):
        raise ParamError(f"runs {run_a} and {run_b} attacked different identities; a paired difference needs "
                         "the same identities")
    if ea["judge"]["run"] != eb["judge"]["run"]:
        raise ParamError(f"runs {run_a} and {run_b} were judged by different evaluation models "
                         f"({ea['judge']['run']} vs {eb['judge']['run']}); re-evaluate one with the other's judge")
    va, ga = _values(ea, metric)
    vb, gb = _values(eb, metric)
    out = paired_difference(va, ga, vb, gb, n_boot, seed)
    same_start = (ia["seed"], ia["restarts"]) == (ib["seed"], ib["restarts"])
    out.update({"metric": metric, "a": run_a, "b": run_b, "same_starting_latents": same_start,
                "verdict": "resolved" if out["resolved"] else "not resolved"})
    return out


def delta(ws: Workspace, defended_run: str, reference_run: str, metric: str = "attack_acc_top1",
          n_boot: int = 2000, seed: int = 0) -> dict:
    """Delta = (AttAcc_ref - AttAcc_def) / (Acc_ref - Acc_def); higher is a better defense.

    Natural accuracies are the targets' held-out accuracies (fixed); the interval comes from the
    identity bootstrap of the attack accuracies (paired when both runs attacked the same identities).
    """
    rd, ed = load_evaluation(ws, defended_run)
    rr, er = load_evaluation(ws, reference_run)
    td, tr = ws.get(rd.config["target_run"]), ws.get(rr.config["target_run"])
    acc_d, acc_r = td.metrics.get("natural_acc"), tr.metrics.get("natural_acc")
    vd, gd = _values(ed, metric)
    vr, gr = _values(er, metric)
    att_drop = float(vr.mean() - vd.mean())
    out = {"metric": metric, "defended": defended_run, "reference": reference_run, "acc_reference": acc_r,
           "acc_defended": acc_d, "acc_drop": None if acc_r is None or acc_d is None else acc_r - acc_d,
           "attack_acc_drop": att_drop}
    if out["acc_drop"] is None or out["acc_drop"] <= 0:
        out.update({"value": None, "lo": None, "hi": None, "n": int(len(np.unique(gd))),
                    "note": "natural accuracy did not drop: Delta is undefined (the defense costs no accuracy)"})
        return out
    paired = np.array_equal(np.unique(gd), np.unique(gr))
    out.update(ratio_difference(vd, gd, vr, gr, out["acc_drop"], paired, n_boot, seed))
    out["paired"] = bool(paired)
    return out
