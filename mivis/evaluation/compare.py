"""Comparing attack runs: paired differences of a metric, and Delta = AttAcc drop / Acc drop.

Both read the per-reconstruction rows stored in each attack run's evaluation.json.
"""
from __future__ import annotations

import numpy as np

from ..params import ParamError
from ..runs import RunRecord, Workspace
from .bootstrap import paired_difference, ratio_difference

JUDGE_METRIC = {"E": "attack_acc_top1", "dlib": "attack_acc_top1@dlib"}  # --by / the pages' judge choice
PER_SAMPLE = {"attack_acc_top1": "eval_top1", "attack_acc_top5": "eval_top5", "knn_dist": "knn_dist",
              "target_likelihood": "p_target"}


def load_evaluation(ws: Workspace, run_id: str) -> tuple[RunRecord, dict]:
    rec = ws.get(run_id)
    if rec.kind != "attack":
        raise ParamError(f"run {run_id} is a {rec.kind} run, not an attack run")
    if rec.status != "done":
        raise ParamError(f"attack run {run_id} is {rec.status}")
    return rec, rec.read_json("evaluation.json")  # DamagedRun when missing, corrupt or malformed


def _values(ev: dict, metric: str) -> tuple[np.ndarray, np.ndarray]:
    rows = ev["per_reconstruction"]
    if metric == "target_success":
        vals = [r["target_pred"] == r["identity"] for r in rows]
    elif metric in PER_SAMPLE:
        vals = [r[PER_SAMPLE[metric]] for r in rows]
    elif metric.startswith("attack_acc_top1@"):
        key = f"top1@{metric.split('@', 1)[1]}"
        if not rows or any(key not in r for r in rows):
            raise ParamError(f"this attack run has no {metric.split('@', 1)[1]} verdicts; add them with "
                             f"`python -m mivis evaluate rejudge --dlib`" if key == "top1@dlib" else
                             f"this attack run has no verdicts of judge {metric.split('@', 1)[1]}")
        vals = [r[key] for r in rows]
    else:
        raise ParamError(f"metric {metric!r} cannot be compared per identity; choose one of "
                         f"{', '.join(list(PER_SAMPLE) + ['target_success'])}")
    return np.asarray(vals, float), np.asarray([r["identity"] for r in rows])


def compare_runs(ws: Workspace, run_a: str, run_b: str, metric: str = "attack_acc_top1", n_boot: int = 2000,
                 seed: int = 0) -> dict:
    """Paired difference a - b over the same identities, with its 95% interval and 'resolved'."""
    if run_a == run_b:
        raise ParamError(f"run {run_a} compared with itself: a paired difference needs two different runs")
    ra, ea = load_evaluation(ws, run_a)
    rb, eb = load_evaluation(ws, run_b)
    ia, ib = ra.config["attack"]["params"], rb.config["attack"]["params"]
    if sorted(ia["identities"]) != sorted(ib["identities"]):
        raise ParamError(f"runs {run_a} and {run_b} attacked different identities; a paired difference needs "
                         "the same identities")
    # dlib is the same judge for every run; evaluation models must be the same one
    if ea["judge"]["run"] != eb["judge"]["run"] and metric != JUDGE_METRIC["dlib"]:
        raise ParamError(f"runs {run_a} and {run_b} were judged by different evaluation models "
                         f"({ea['judge']['run']} vs {eb['judge']['run']}); re-evaluate one with the other's judge")
    va, ga = _values(ea, metric)
    vb, gb = _values(eb, metric)
    out = paired_difference(va, ga, vb, gb, n_boot, seed)
    same_start = (ia["seed"], ia["restarts"]) == (ib["seed"], ib["restarts"])
    out.update({"metric": metric, "a": run_a, "b": run_b, "same_starting_latents": same_start,
                "verdict": "resolved" if out["resolved"] else "not resolved"})
    from .sides import side, warnings
    out["a_side"], out["b_side"] = side(ws, ra), side(ws, rb)
    out["warnings"] = warnings(out["a_side"], out["b_side"])
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
    from .sides import side, warnings
    sd, sr = side(ws, rd), side(ws, rr)
    out = {"metric": metric, "defended": defended_run, "reference": reference_run, "acc_reference": acc_r,
           "acc_defended": acc_d, "acc_drop": None if acc_r is None or acc_d is None else acc_r - acc_d,
           "attack_acc_drop": att_drop, "defended_side": sd, "reference_side": sr,
           "warnings": warnings(sd, sr, ("the defended run", "the reference"))}
    if out["acc_drop"] is None or out["acc_drop"] <= 0:
        out.update({"value": None, "lo": None, "hi": None, "n": int(len(np.unique(gd))),
                    "note": "natural accuracy did not drop: Delta is undefined (the defense costs no accuracy)"})
        return out
    paired = np.array_equal(np.unique(gd), np.unique(gr))
    out.update(ratio_difference(vd, gd, vr, gr, out["acc_drop"], paired, n_boot, seed))
    out["paired"] = bool(paired)
    return out
