"""Attack runs: validate, invert, evaluate, and store everything in the registry (kind "attack").

Files: reconstructions.safetensors (x as float16, y, restart, p_target, target_pred, the
per-latent likelihood trace), reconstructions.png (per identity: a real training face, then the
reconstructions), trace.json, evaluation.json (metrics with intervals, histogram data, rows).
"""
from __future__ import annotations

import time

import torch

from ..data import load_split
from ..evaluation.bootstrap import BOOTSTRAP_SEED
from ..params import ParamError
from ..progress import NULL, Reporter
from ..runs import Run, RunRecord, Workspace
from .base import ATTACKS
from .invert import InversionResult, invert, plan_attack

MAX_GRID_IDENTITIES = 50


def _judges(ws: Workspace, target: RunRecord, eval_run: str | None, extra: list[str], device):
    from ..evaluation import check_judge, load_judge, pick_eval_run
    primary = eval_run or pick_eval_run(ws, target)
    check_judge(ws, primary, target)
    for e in extra:
        check_judge(ws, e, target)
    if primary in extra:
        raise ParamError(f"extra judge {primary} is already the primary evaluation model")
    return primary, lambda: [load_judge(ws, r, target, device) for r in [primary, *extra]]


def attack_run(attack: str, target_run: str, prior_run: str | None = None, identities: list[int] | None = None,
               restarts: int | None = None, params: dict | None = None, *, eval_run: str | None = None,
               extra_judges: list[str] = (), dlib: bool | None = None, workspace: Workspace | None = None,
               reporter: Reporter = NULL, on_step=None, hook_every: int = 1, name: str = "",
               n_boot: int = 2000) -> RunRecord:
    ws = workspace or Workspace()
    plan = plan_attack(attack, target_run, prior_run, identities, restarts, params, workspace=ws)
    from ..device import resolve_device
    # judge where the attack ran: on a GPU machine the CPU is shared by parallel jobs
    primary, make_judges = _judges(ws, plan.target, eval_run, list(extra_judges), resolve_device(plan.params["device"]))
    from ..checks import check_run_weights
    for rid in dict.fromkeys([plan.target.id, plan.prior.id if plan.prior else None, primary, *extra_judges]):
        if rid:
            check_run_weights(ws, rid)  # unloadable weights: refused before the attack run exists
    if dlib is None:  # the independent judge runs on every attack when it is installed
        from ..evaluation.dlib_judge import available
        dlib = available()
    if dlib:
        from ..evaluation.dlib_judge import WORKERS, check_available, worker_count
        check_available()
        WORKERS.start(worker_count(len(plan.identities) * plan.params["restarts"]))  # load dlib meanwhile
    from .base import METHOD_VERSIONS
    config = {"attack": {"name": attack, "params": plan.params, "method_version": METHOD_VERSIONS.get(attack, 1)},
              "target_run": plan.target.id,
              "prior_run": plan.prior.id if plan.prior else None, "eval_run": primary,
              "extra_judges": list(extra_judges), "dlib": dlib, "data": plan.target.config["data"]}
    parents = [plan.target.id] + ([plan.prior.id] if plan.prior else []) + [primary] + list(extra_judges)
    run = ws.create("attack", config, parents=parents, seed=plan.params["seed"],
                    data_fingerprint=plan.target.data_fingerprint,
                    name=name or f"{attack} on {plan.target.config['model']['arch']}")
    try:
        from .snapshots import SnapshotRecorder
        if ATTACKS.get(attack).obj.gradient_free:  # no optimisation steps for the layers analysis to replay
            snaps, hook, every = None, on_step, hook_every
        else:
            snaps = hook = SnapshotRecorder(plan.params["iterations"], on_step, hook_every)
            every = 1
        res = invert(attack, plan.target.id, config["prior_run"], workspace=ws, reporter=reporter, on_step=hook,
                     hook_every=every, plan=plan)
        t0 = time.monotonic()
        store_result(run, res, plan.target)  # faces first: the final reconstructions are on disk before any judge
        steps = 1 + bool(dlib)  # E (with any extra evaluation models), then dlib
        verdicts: dict = {}

        def judged(name: str, m: dict) -> None:  # each judge's top-1 reaches the live view as it finishes
            verdicts[f"top1_{name}"] = m.get("value")
            reporter.report(force=True, phase="judging", run=run.id, done=len(verdicts), total=steps,
                            judging="dlib" if len(verdicts) < steps else "", **verdicts)
        reporter.report(force=True, phase="judging", run=run.id, done=0, total=steps, judging="E")
        evaluation = evaluate_result(ws, res, plan.target, make_judges(), dlib, n_boot, on_judged=judged)
        for row, lg in zip(evaluation["per_reconstruction"], res.target_logit.tolist()):
            row["target_logit"] = lg
        add_selection(evaluation, attack, plan.params, n_boot)
        if snaps is not None and snaps.tensors() is not None:
            run.save_weights(snaps.tensors(), {"run": run.id}, name="snapshots.safetensors")
        run.write_json("evaluation.json", evaluation)
        m = dict(evaluation["metrics"])
        m.update({"attack_seconds": round(res.seconds, 2), "evaluate_seconds": round(time.monotonic() - t0, 2),
                  "device": res.device, "batch_size": res.batch_size, "chunks": res.chunks,
                  "identity_steps_per_second": round(len(res.trace.p_samples[0]) * res.params["iterations"]
                                                     / max(res.seconds, 1e-9), 1),
                  "n_reconstructions": int(len(res.y)), "extra_judges": evaluation["extra_judges"],
                  "events": res.events})
        run.finish(m)
    except BaseException as e:
        run.fail_from(e)
        raise
    return run.record()


def evaluate_result(ws, res: InversionResult, target: RunRecord, judges, dlib: bool, n_boot: int,
                    on_judged=None) -> dict:
    """E (and any extra evaluation models), then dlib; on_judged(name, top-1 metric) after each, so a live view
    adds each verdict as its judge finishes. The same evaluation as judging all at once."""
    from ..evaluation import evaluate
    split = load_split(target.config["data"])
    ev = evaluate(res.x, res.y, res.restart, res.p_target, res.target_pred, judges, split, n_boot, BOOTSTRAP_SEED)
    if on_judged is not None:
        on_judged("E", ev["metrics"]["attack_acc_top1"])
    if dlib:
        from ..evaluation.dlib_judge import dlib_verdicts
        add_verdicts(ev, "dlib", dlib_verdicts(res.x, res.y, split), res.y.numpy(), n_boot, BOOTSTRAP_SEED)
        if on_judged is not None:
            on_judged("dlib", ev["extra_judges"]["dlib"]["attack_acc_top1"])
    return ev


def add_verdicts(ev: dict, name: str, v: dict, groups, n_boot: int, seed: int) -> None:
    """A judge's per-reconstruction verdicts {"top1", "info"} added to an evaluation, as evaluate() stores its
    extra_verdicts: extra_judges[name] (top-1 with the identity bootstrap) and top1@name in every row."""
    from ..evaluation.bootstrap import bootstrap_mean
    ev["extra_judges"][name] = {**v.get("info", {}), "attack_acc_top1": bootstrap_mean(v["top1"], groups, n_boot, seed)}
    for r, ok in zip(ev["per_reconstruction"], v["top1"]):
        r[f"top1@{name}"] = bool(ok)


SELECTED = ("attack_acc_top1", "attack_acc_top5", "knn_dist")

# How the best restart per identity is chosen (the *_selected metrics: "logit", *_selected_prob: "probability")
SELECTION_RULES = {
    "logit": "per identity, going through its restarts in order, the restart whose target logit of the class "
             "exceeds the running best, which starts at 0 (GMI's code, Celeba/attack.py lines 22 and 70-80); an "
             "identity none of whose restarts has a logit above 0 keeps none and counts as not recovered",
    "probability": "per identity the restart with the highest p_T(y|x) (mivis method version 2; not GMI's rule)",
}


def paper_selects(attack: str, params: dict) -> bool:
    """Whether the paper's protocol keeps only the best restart per identity: GMI's code does; LOMMA's
    evaluation (metrics/eval_accuracy.py lines 32-61) averages over all its seeds, on GMI as on KEDMI."""
    return attack == "gmi"


def select_by_logit(rows: list[dict]) -> dict[int, dict | None]:
    """GMI's rule: per identity the restart (in restart order) whose target logit beats a running best that
    starts at 0; None where no restart's logit is above 0."""
    best: dict[int, dict | None] = {}
    score: dict[int, float] = {}
    for r in sorted(rows, key=lambda r: (r["identity"], r["restart"])):
        c = r["identity"]
        best.setdefault(c, None)
        if r["target_logit"] > score.get(c, 0.0):
            score[c], best[c] = r["target_logit"], r
    return best


def select_by_probability(rows: list[dict]) -> dict[int, dict]:
    best: dict[int, dict] = {}
    for r in rows:
        if r["identity"] not in best or r["p_target"] > best[r["identity"]]["p_target"]:
            best[r["identity"]] = r
    return best


def _selected_metrics(best: dict[int, dict | None], n_boot: int, seed: int) -> dict:
    import numpy as np
    from ..evaluation.bootstrap import bootstrap_mean
    ids = sorted(best)
    groups = np.array(ids)
    out = {}
    for name, col in zip(SELECTED[:2], ("eval_top1", "eval_top5")):  # an identity that kept none: not recovered
        out[name] = bootstrap_mean(np.array([float(best[c][col]) if best[c] else 0.0 for c in ids]), groups,
                                   n_boot, seed)
    kept = [c for c in ids if best[c]]
    if kept:
        out["knn_dist"] = bootstrap_mean(np.array([float(best[c]["knn_dist"]) for c in kept]), np.array(kept),
                                         n_boot, seed)
    return out


def add_selection(evaluation: dict, attack: str, params: dict, n_boot: int, seed: int = BOOTSTRAP_SEED) -> None:
    """Add the best-restart-per-identity metrics beside the all-restarts ones, and say which the paper uses:
    *_selected by GMI's code's rule (the target's raw logit, running best from 0; needs each row's
    target_logit) and *_selected_prob by the highest p_T(y|x) (method version 2's rule, labelled)."""
    rows = evaluation["per_reconstruction"]
    m = evaluation["metrics"]
    rules = {}
    if rows and all("target_logit" in r for r in rows):
        best = select_by_logit(rows)
        for name, v in _selected_metrics(best, n_boot, seed).items():
            m[f"{name}_selected"] = v
        m["selected_none_kept"] = sum(b is None for b in best.values())
        rules["selected"] = SELECTION_RULES["logit"]
    for name, v in _selected_metrics(select_by_probability(rows), n_boot, seed).items():
        m[f"{name}_selected_prob"] = v
    rules["selected_prob"] = SELECTION_RULES["probability"]
    evaluation["selection"] = {
        "rules": rules,
        "paper_protocol": "selected" if paper_selects(attack, params) else "all restarts",
        "metrics": {"all restarts": list(SELECTED), **{k: [f"{n}_{k}" for n in SELECTED] for k in rules}}}


def store_result(run: Run, res: InversionResult, target: RunRecord) -> None:
    run.save_weights({"x": res.x.half(), "y": res.y, "restart": res.restart, "p_target": res.p_target,
                      "target_pred": res.target_pred, "target_logit": res.target_logit,
                      "trace_p_samples": res.trace.p_samples,
                      "trace_checkpoints": torch.tensor(res.trace.checkpoints)},
                     {"attack": res.attack, "run": run.id}, name="reconstructions.safetensors")
    run.write_json("trace.json", res.trace.to_json())
    run.write_bytes("reconstructions.png", reconstruction_grid(res, target))


def reconstruction_grid(res: InversionResult, target: RunRecord) -> bytes:
    """One row per identity: a real private training face, then that identity's reconstructions."""
    from ..grid import grid_png
    split = load_split(target.config["data"])
    ids = res.identities[:MAX_GRID_IDENTITIES]
    per = max(int((res.y == c).sum()) for c in ids)
    rows = []
    blank = -torch.ones(res.x.shape[1:])  # black
    for c in ids:
        real = split.private_images(c, "train")[:1]
        rec = res.x[res.y == c]
        pad = [blank] * (per - len(rec))
        rows += [real[0], *rec, *pad]
    size = res.x.shape[-1]
    return grid_png(torch.stack(rows), per + 1, scale=2 if size <= 32 else 1)


def reevaluate(ws: Workspace, attack_run_id: str, eval_run: str | None = None, extra_judges: list[str] = (),
               dlib: bool | None = None, n_boot: int = 2000) -> dict:
    """Judge a finished attack run's stored reconstructions again (e.g. with another evaluation model).

    The new evaluation replaces evaluation.json (the previous one is kept as evaluation-<judge run>.json)
    and the run's metrics.
    """
    rec = ws.get(attack_run_id)
    if rec.kind != "attack" or rec.status != "done":
        raise ParamError(f"run {attack_run_id} is a {rec.status} {rec.kind} run; a finished attack run is needed")
    cfg = rec.config
    if not (isinstance(cfg.get("target_run"), str) and isinstance(cfg.get("eval_run"), str)
            and isinstance(cfg.get("attack"), dict) and isinstance(cfg["attack"].get("params"), dict)):
        from ..runs import DamagedRun
        raise DamagedRun(rec.id, "its config names no target run, evaluation model or attack parameters")
    target = ws.get(rec.config["target_run"])
    primary, make_judges = _judges(ws, target, eval_run or rec.config["eval_run"], list(extra_judges), "cpu")
    if dlib is None:  # keep the independent judge's verdicts when it is installed
        from ..evaluation.dlib_judge import available
        dlib = available()
    if dlib:
        from ..evaluation.dlib_judge import check_available
        check_available()
    t = rec.read_tensors("reconstructions.safetensors", ("restart", "p_target", "target_pred"))
    from ..evaluation import evaluate
    split = load_split(target.config["data"])
    extra = {}
    if dlib:
        from ..evaluation.dlib_judge import dlib_verdicts
        extra["dlib"] = dlib_verdicts(t["x"].float(), t["y"], split)
    ev = evaluate(t["x"].float(), t["y"], t["restart"], t["p_target"], t["target_pred"], make_judges(), split,
                  n_boot, BOOTSTRAP_SEED, extra)
    if "target_logit" in t and t["target_logit"].shape == t["y"].shape:  # stored since method version 3
        for row, lg in zip(ev["per_reconstruction"], t["target_logit"].tolist()):
            row["target_logit"] = lg
    add_selection(ev, rec.config["attack"]["name"], rec.config["attack"]["params"], n_boot)
    run = Run(ws, rec.id)
    old = rec.read_json("evaluation.json")
    run.write_json(f"evaluation-{old['judge']['run']}.json", old)
    run.write_json("evaluation.json", ev)
    run.update_metrics({**ev["metrics"], "extra_judges": ev["extra_judges"]})
    return ev
