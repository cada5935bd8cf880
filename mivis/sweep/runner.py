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
    from ..names import file_name
    name = file_name(grid.get("name", "sweep"),
                     "grid name (`name = ...` in the grid, else the file's name; it names sweeps/<name>.json)")
    trials, steps = [], {}
    for t in expand(grid):
        st, info = trial_steps(t)
        for s in st:
            steps.setdefault(s.key, s)
        trials.append({"trial": t, "info": info})
    if any(t["info"].get("target_run") for t in trials):
        check_target_runs(trials, steps, ws or Workspace())
    _validate(steps)
    check_named_inputs(steps, ws)
    depth: dict[str, int] = {}

    def d(k: str) -> int:
        if k not in depth:
            depth[k] = 1 + max((d(x) for x in steps[k].deps), default=-1)
        return depth[k]
    waves: dict[int, list[str]] = {}
    for k in steps:
        waves.setdefault(d(k), []).append(k)
    return SweepPlan(name, trials, steps, [waves[i] for i in sorted(waves)])


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


def check_named_inputs(steps: dict[str, Step], ws: Workspace | None) -> None:
    """Every run (`init_run`) and weights file (`init_weights`) a grid's training settings name: it exists,
    loads and holds finite numbers, before the first step runs (one line naming it otherwise)."""
    from ..models import same_architecture
    from ..train import CLASSIFIER_KINDS
    from ..checks import check_run_weights
    from ..weights import WeightsError, first_nonfinite, load_tensors
    for s in steps.values():
        if s.kind != "train":
            continue
        train = s.spec["train"]
        rid, path = train.get("init_run"), train.get("init_weights")
        where = f"{s.label}: init_run {rid!r}"
        if rid:
            ws = ws or Workspace()
            if not isinstance(rid, str) or not ws.exists(rid):
                raise ParamError(f"{where}: no such run in the workspace {ws.path}")
            rec = ws.get(rid)
            if rec.kind not in CLASSIFIER_KINDS or rec.status != "done":
                raise ParamError(f"{where} is a {rec.status} {rec.kind} run; a finished classifier is needed")
            check_run_weights(ws, rid)
            arch = (rec.config.get("model") or {}).get("arch")
            if train.get("arch") and not same_architecture(arch, train["arch"]):
                raise ParamError(f"{where} is a {arch}, not a {train['arch']}")
        if path:
            p = Path(str(path)).expanduser()
            if not p.is_file():
                raise ParamError(f"{s.label}: init_weights {p} does not exist or is not a file")
            tensors = load_tensors(p)[0]
            bad = first_nonfinite(tensors, {k for k in tensors if k.endswith(("weight", "bias"))})
            if bad:
                raise WeightsError(f"{p}: weights contain NaN or infinite values (e.g. {bad}); a model cannot "
                                   "start from them")


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
        elif s.kind == "prior" and s.spec.get("shipped"):
            from ..priors.store import ASSETS, FILES, shipped_priors
            src = Path(s.spec["shipped"])
            if not src.is_dir() and (ASSETS / s.spec["shipped"]).is_dir():
                src = ASSETS / s.spec["shipped"]
            if not all((src / f).is_file() for f in FILES):
                raise ParamError(f"prior.shipped {s.spec['shipped'][:80]!r} is neither a shipped prior nor a prior "
                                 f"folder; shipped priors: {', '.join(shipped_priors()) or 'none'}")


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


def summary_path(ws: Workspace, name) -> Path:
    """sweeps/<name>.json of the workspace: `name` one safe file name (names.file_name), the path inside it."""
    from ..names import file_name, inside
    folder = ws.path / "sweeps"
    return inside(ws.path, folder / f"{file_name(name, 'sweep name')}.json", "sweep summary")


def write_summary(ws: Workspace, summary: dict) -> Path:
    from ..weights import atomic_path
    import os
    path = summary_path(ws, summary["name"])
    path.parent.mkdir(exist_ok=True)
    tmp = atomic_path(path)
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, path)
    return path


def load_summary(ws: Workspace, name: str) -> dict:
    """A sweep's summary, checked: a missing, corrupt or malformed file is one ParamError naming it."""
    path = summary_path(ws, name)
    if not path.exists():
        raise ParamError(f"no sweep named {name!r} in {ws.path / 'sweeps'}; run it first")
    try:
        summary = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ParamError(f"cannot read the sweep summary {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise ParamError(f"the sweep summary {path} is damaged (not JSON: {str(e).splitlines()[0][:100]}); "
                         "run the sweep again to rewrite it (its finished steps are reused)") from None
    problem = _summary_problem(summary)
    if problem:
        raise ParamError(f"the sweep summary {path} is damaged ({problem}); run the sweep again to rewrite it "
                         "(its finished steps are reused)")
    return summary


def _summary_problem(summary) -> str | None:
    """What is wrong with a summary's shape (what `report` reads of it), or None."""
    if not isinstance(summary, dict) or not isinstance(summary.get("trials"), list):
        return "no list of trials"
    for i, t in enumerate(summary["trials"]):
        if not isinstance(t, dict) or not isinstance(t.get("complete"), bool) or not isinstance(t.get("runs"), dict):
            return f"trial {i + 1} is not a trial with runs"
        if not all(r is None or isinstance(r, str) for r in t["runs"].values()):
            return f"trial {i + 1} names runs that are not run ids"
        if t["complete"]:
            if not all(isinstance(t.get(k), str) for k in ("arch", "defense")) or not isinstance(
                    t.get("image_size"), int) or not isinstance(t.get("seed"), (int, type(None))) \
                    or not isinstance(t["runs"].get("attack"), str) or not isinstance(t["runs"].get("target"), str):
                return f"trial {i + 1} lacks its arch, defense, image size, seed or attack and target runs"
            if not isinstance(t.get("init"), (str, type(None))):
                return f"trial {i + 1} has a malformed init"
    return None
