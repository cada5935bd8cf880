"""Run a sweep: plan (validate, deduplicate steps), estimate, execute wave by wave, record.

Steps are grouped into waves by dependency depth; every step of a wave only needs runs of
earlier waves, so a wave's steps can run in parallel (the Ray executor does) and no two workers
ever produce the same run. Finished steps are reused, so an interrupted sweep resumes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..params import ParamError
from ..progress import NULL, Cancelled, Reporter
from ..runs import Workspace
from .grid import expand, load_grid
from .steps import Step, check_target_run, execute, find_existing, trial_steps


@dataclass
class SweepPlan:
    name: str
    trials: list[dict]                 # {"trial": config, "info": {..., "keys": {...}}}
    steps: dict[str, Step]             # unique steps by key
    waves: list[list[str]] = field(default_factory=list)


def plan_sweep(grid: dict | str | Path, ws: Workspace | None = None) -> SweepPlan:
    """Expand and validate every trial before anything runs. `ws` (default: the current workspace) is
    only read when a grid names an existing run as its target."""
    if not isinstance(grid, dict):
        grid = load_grid(grid)
    trials, steps = [], {}
    for t in expand(grid):
        st, info = trial_steps(t)
        for s in st:
            steps.setdefault(s.key, s)
        trials.append({"trial": t, "info": info})
    if any(t["info"].get("target_run") for t in trials):
        check_target_runs(trials, steps, ws or Workspace())
    _validate(steps)
    depth: dict[str, int] = {}

    def d(k: str) -> int:
        if k not in depth:
            depth[k] = 1 + max((d(x) for x in steps[k].deps), default=-1)
        return depth[k]
    waves: dict[int, list[str]] = {}
    for k in steps:
        waves.setdefault(d(k), []).append(k)
    return SweepPlan(grid.get("name", "sweep"), trials, steps, [waves[i] for i in sorted(waves)])


def check_target_runs(trials: list[dict], steps: dict[str, Step], ws: Workspace) -> None:
    """Check every run a trial names as its target against that trial's data; fill in the trial's
    architecture, defenses and seed from the run, and the step's facts for estimates."""
    from ..data import load_split
    from .grid import defense_label
    splits: dict[str, object] = {}
    for t in trials:
        info = t["info"]
        if not info.get("target_run"):
            continue
        data = t["trial"].get("data", {})
        sig = json.dumps(data, sort_keys=True)
        if sig not in splits:
            splits[sig] = load_split(data)
        rec = check_target_run(ws, info["target_run"], data, splits[sig])
        model = rec.config.get("model") or {}
        defenses = model.get("defenses") or {}
        info.update(arch=model.get("arch"), defense=defense_label(defenses), defenses=defenses, seed=rec.seed)
        steps[info["keys"]["target"]].meta.update(arch=model.get("arch"), data=data)


def _validate(steps: dict[str, Step]) -> None:
    """Parameter checks that need no trained run (refusals happen here, before compute)."""
    from ..attacks import ATTACKS
    from ..defenses import instantiate
    from ..models import model_config
    from ..data import load_split
    from ..train import TRAIN_PARAMS
    for s in steps.values():
        if s.kind == "train":
            cfg = TRAIN_PARAMS.validate({k: v for k, v in s.spec["train"].items() if k != "init_run"},
                                        context=s.label)
            split = load_split(s.spec["data"])
            c, h, _ = split.image_shape
            n = len(split.public_names) if s.spec["role"] == "public" else split.num_classes
            mcfg = model_config(cfg["arch"], n, c, h, s.spec.get("arch_params"), s.spec.get("defenses"))
            instantiate(mcfg["defenses"], mcfg)
        elif s.kind == "attack":
            ATTACKS.get(s.spec["name"]).params.validate(s.spec["params"], context=s.label)


def pending(plan: SweepPlan, ws: Workspace) -> tuple[dict[str, str], list[str]]:
    """Runs already there (key -> run id) and the keys still to run, in wave order."""
    done: dict[str, str] = {}
    todo: list[str] = []
    for wave in plan.waves:
        for k in wave:
            step = plan.steps[k]
            if all(dep in done for dep in step.deps):
                found = find_existing(step, ws, done)
                if found:
                    done[k] = found
                    continue
            todo.append(k)
    return done, todo


def estimate(plan: SweepPlan, ws: Workspace, device: str = "auto") -> dict:
    from .estimate import estimate_step
    done, todo = pending(plan, ws)
    per_kind: dict[str, float] = {}
    for k in todo:
        s = plan.steps[k]
        per_kind[s.kind] = per_kind.get(s.kind, 0.0) + estimate_step(s, plan.steps, device)
    return {"steps": len(plan.steps), "reused": len(done), "to_run": len(todo),
            "seconds": round(sum(per_kind.values()), 1), "by_kind": {k: round(v, 1) for k, v in per_kind.items()}}


Executor = Callable[[list[Step], Workspace, dict, Reporter], dict]


def local_executor(steps: list[Step], ws: Workspace, runs: dict, reporter: Reporter) -> dict:
    """Run a wave's steps one after another; returns key -> run id or an exception."""
    out = {}
    for s in steps:
        reporter.report(force=True, phase="step", step=s.label, kind=s.kind)
        try:
            out[s.key] = execute(s, ws, runs, reporter.child(step=s.label))
        except Cancelled:
            raise
        except Exception as e:  # one failed step skips its dependants, not the whole sweep
            out[s.key] = e
    return out


def run_sweep(plan: SweepPlan, ws: Workspace | None = None, reporter: Reporter = NULL,
              executor: Executor | None = None) -> dict:
    """Run every pending step. Locally, trial by trial (partial results early; the summary is
    rewritten after each trial); with a parallel executor, wave by wave."""
    ws = ws or Workspace()
    t0 = time.monotonic()
    runs, failed = pending(plan, ws)[0], {}
    reused = len(runs)
    total = len(plan.steps)

    def summary() -> dict:
        out = {"name": plan.name, "seconds": round(time.monotonic() - t0, 1), "steps": total, "reused": reused,
               "ran": len(runs) - reused, "failed": dict(failed), "trials": []}
        for t in plan.trials:
            keys = t["info"]["keys"]
            out["trials"].append({**{k: v for k, v in t["info"].items() if k != "keys"}, "trial": t["trial"],
                                  "runs": {role: runs.get(k) for role, k in keys.items() if k},
                                  "complete": all(k in runs for k in keys.values() if k)})
        write_summary(ws, out)
        return out

    def ready_and_skipped(keys: list[str]) -> list[str]:
        ready = []
        for k in keys:
            if k in runs or k in failed:
                continue
            if any(d in failed for d in plan.steps[k].deps):
                failed[k] = "skipped: a step it needs failed"
            else:
                ready.append(k)
        return ready

    def absorb(results: dict) -> None:
        for k, r in results.items():
            if isinstance(r, BaseException):
                failed[k] = f"{type(r).__name__}: {r}"
            else:
                runs[k] = r

    if executor is None:  # local: depth-first per trial
        order = {k: i for i, wave in enumerate(plan.waves) for k in wave}
        for n, t in enumerate(plan.trials):
            reporter.check()
            keys = sorted({k for k in t["info"]["keys"].values() if k}, key=order.get)
            for k in keys:
                if ready_and_skipped([k]):
                    reporter.report(force=True, phase="trial", trial=n + 1, trials=len(plan.trials),
                                    done=len(runs), total=total)
                    absorb(local_executor([plan.steps[k]], ws, runs, reporter))
            summary()
    else:
        for i, wave in enumerate(plan.waves):
            reporter.check()
            ready = ready_and_skipped(wave)
            if ready:
                reporter.report(force=True, phase="wave", wave=i + 1, waves=len(plan.waves), steps=len(ready),
                                done=len(runs), total=total)
                absorb(executor([plan.steps[k] for k in ready], ws, runs, reporter))
            summary()
    return summary()


def write_summary(ws: Workspace, summary: dict) -> Path:
    from ..weights import atomic_path
    import os
    folder = ws.path / "sweeps"
    folder.mkdir(exist_ok=True)
    path = folder / f"{summary['name']}.json"
    tmp = atomic_path(path)
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, path)
    return path


def load_summary(ws: Workspace, name: str) -> dict:
    path = ws.path / "sweeps" / f"{name}.json"
    if not path.exists():
        raise ParamError(f"no sweep named {name!r} in {ws.path / 'sweeps'}; run it first")
    return json.loads(path.read_text())
