"""Sweep steps: each trial becomes a chain of steps (eval model, public model, target, prior,
attack, analyses). A step's key hashes its spec, in which dependencies appear by their keys, so
equal keys mean equal work; finished steps are reused (resume), also across grid files.

A target that names an existing run (`target = { run = ... }`) is an "existing" step: it trains
nothing, it stands for that run (checked when the sweep is planned, runner.check_target_runs).
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field

from ..params import ParamError
from ..progress import NULL, Reporter
from ..runs import Workspace
from .grid import defense_label, names_run

TRAIN_ONLY_KEYS = ("defenses", "arch_params", "init")
_STEPS_SCHEMA = """CREATE TABLE IF NOT EXISTS sweep_steps (
    key TEXT PRIMARY KEY, run_id TEXT NOT NULL, kind TEXT NOT NULL, created REAL NOT NULL)"""


@dataclass
class Step:
    kind: str                      # train | existing | prior | attack | layers
    spec: dict                     # JSON-able; dependencies referenced by step key
    deps: list[str] = field(default_factory=list)
    label: str = ""
    meta: dict = field(default_factory=dict)  # facts for estimates (an existing run's arch, data); not in the key

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps({"kind": self.kind, **self.spec}, sort_keys=True).encode()).hexdigest()[:20]


def trial_steps(trial: dict) -> tuple[list[Step], dict]:
    """The steps of one trial and a summary {label fields, step keys by role}."""
    data = trial.get("data", {})
    target = copy.deepcopy(trial.get("target", {}))
    steps: list[Step] = []

    def add(step: Step) -> str:
        steps.append(step)
        return step.key

    ev = add(Step("train", {"role": "eval", "train": trial.get("eval", {"arch": "vgg11", "lr": 1e-3}),
                            "data": data}, label="evaluation model"))
    if names_run(target):
        return _steps_on_run(trial, target, data, steps, add, ev)
    init_key = None
    if target.get("init") == "public":
        pub = add(Step("train", {"role": "public", "train": trial.get("public", {"arch": target.get("arch", "resnet18")}),
                                 "data": data}, label="public pre-training"))
        init_key = pub
    elif target.get("init"):
        raise ParamError(f"target.init: {target['init']!r} is not allowed; use \"public\" or leave it out")
    defenses = target.get("defenses", {})
    from ..defenses.base import defenses_version
    tg = add(Step("train", _versioned({"role": "target",
                                      "train": {k: v for k, v in target.items() if k not in TRAIN_ONLY_KEYS},
                                      "defenses": defenses, "arch_params": target.get("arch_params", {}),
                                      "init": init_key, "data": data},
                                     defenses_version(defenses, target.get("arch", "resnet18"))),
                  deps=[init_key] if init_key else [],
                  label=f"target {target.get('arch', 'resnet18')} {defense_label(defenses)} seed {target.get('seed', 0)}"))
    name, keys = _attack_steps(trial, data, tg, ev, init_key, add)
    info = {"arch": target.get("arch", "resnet18"), "defense": defense_label(defenses), "defenses": defenses,
            "seed": target.get("seed", 0), "attack": name, "init": target.get("init"),
            "image_size": data.get("image_size", 64), "keys": keys}
    return steps, info


def _versioned(spec: dict, version: int) -> dict:
    # a method whose dynamics changed gets its version in the key; unchanged methods keep their old keys
    return {**spec, "method_version": version} if version > 1 else spec


def _attack_steps(trial: dict, data: dict, tg: str, ev: str, pub: str | None, add) -> tuple[str, dict]:
    """The prior, attack and analysis steps of a trial whose target step has key `tg`; (attack name, keys by role)."""
    from ..attacks.base import METHOD_VERSIONS as ATTACK_VERSIONS
    from ..priors.base import METHOD_VERSIONS as PRIOR_VERSIONS
    versioned = _versioned
    attack = copy.deepcopy(trial.get("attack", {"name": "gmi"}))
    name = attack.pop("name", "gmi")
    prior = trial.get("prior", {})
    pr = None
    if name != "whitebox":
        if not isinstance(prior, dict):
            raise ParamError(f"prior: {str(prior)[:60]!r} is not a table; set prior = {{ shipped = \"NAME\" }} or "
                             "prior = { type = \"gmi\" } in the grid")
        if not prior:
            raise ParamError(f"attack {name} needs a prior: set prior.shipped or prior.type in the grid")
        if "shipped" in prior and not (isinstance(prior["shipped"], str) and prior["shipped"].strip()):
            raise ParamError(f"prior.shipped: {str(prior['shipped'])[:60]!r} is not a shipped prior's name or folder "
                             "(e.g. \"orl32-gmi\"; `python -m mivis prior shipped` lists them)")
        if prior.get("shipped"):
            pr = add(Step("prior", {"shipped": prior["shipped"]}, label=f"prior {prior['shipped']}"))
        else:
            ptype = prior.get("type", "gmi")
            spec = {"type": ptype, "params": {k: v for k, v in prior.items() if k not in ("type", "preset")},
                    "preset": prior.get("preset"), "data": data,
                    "target": tg if ptype in ("kedmi", "plgmi") else None}
            pr = add(Step("prior", versioned(spec, PRIOR_VERSIONS.get(ptype, 1)), deps=[tg] if spec["target"] else [],
                          label=f"prior {ptype}"))
    at = add(Step("attack", versioned({"name": name, "params": attack, "target": tg, "prior": pr, "eval": ev},
                                      ATTACK_VERSIONS.get(name, 1)),
                  deps=[d for d in (tg, pr, ev) if d], label=f"attack {name}"))
    keys = {"eval": ev, "target": tg, "prior": pr, "attack": at, "public": pub}
    for analysis in trial.get("analyses", []):
        if analysis != "layers":
            raise ParamError(f"analyses: {analysis!r} is not one of: layers")
        keys["layers"] = add(Step("layers", {"target": tg, "attack": at, "params": trial.get("layers", {})},
                                  deps=[tg, at], label="layers analysis"))
    return name, keys


def _steps_on_run(trial: dict, target: dict, data: dict, steps: list, add, ev: str) -> tuple[list[Step], dict]:
    """A trial whose target is an existing run: no public or target training, the rest as usual."""
    run_id = target["run"]
    if not isinstance(run_id, str) or not run_id:
        raise ParamError(f"target.run must be a run id (a string, e.g. from `python -m mivis runs list`), "
                         f"got {run_id!r}")
    extra = sorted(set(target) - {"run"})
    if extra:
        raise ParamError(f"target.run {run_id!r} names an existing run, so target.{', target.'.join(extra)} cannot be "
                         "set with it (the run's own architecture, defenses and seed are used); leave them out")
    tg = add(Step("existing", {"run": run_id}, label=f"target run {run_id}", meta={"data": data}))
    name, keys = _attack_steps(trial, data, tg, ev, None, add)
    # arch, defense and seed are the run's: runner.check_target_runs fills them in from its record
    info = {"arch": None, "defense": None, "defenses": None, "seed": None, "attack": name, "init": None,
            "image_size": data.get("image_size", 64), "target_run": run_id, "keys": keys}
    return steps, info


class StepStore:
    """Which step key produced which run (in the workspace database)."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        with ws._connect() as con:
            con.execute(_STEPS_SCHEMA)

    def finished(self, key: str) -> str | None:
        with self.ws._connect() as con:
            row = con.execute("SELECT run_id FROM sweep_steps WHERE key = ?", (key,)).fetchone()
        if row and self.ws.exists(row["run_id"]) and self.ws.get(row["run_id"]).status == "done":
            return row["run_id"]
        return None

    def record(self, key: str, run_id: str, kind: str) -> None:
        with self.ws._connect() as con:
            con.execute("INSERT OR REPLACE INTO sweep_steps (key, run_id, kind, created) VALUES (?,?,?,?)",
                        (key, run_id, kind, time.time()))


def _train_args(step: Step, runs: dict) -> dict:
    s = step.spec
    train = dict(s["train"])
    if s.get("init"):
        train["init_run"] = runs[s["init"]]
    return {"role": s["role"], "train_cfg": train, "data_cfg": s["data"], "arch_params": s.get("arch_params") or None,
            "defenses": s.get("defenses") or None}


def find_existing(step: Step, ws: Workspace, runs: dict) -> str | None:
    """A finished run with exactly this step's configuration, made by a sweep or by hand."""
    if step.kind == "existing":  # the run the grid names (checked when planned)
        rid = step.spec["run"]
        return rid if ws.exists(rid) and ws.get(rid).status == "done" else None
    found = StepStore(ws).finished(step.key)
    if found or step.kind != "train":
        return found
    from ..train import as_recorded_before, training_config
    a = _train_args(step, runs)
    cfg = training_config(a["role"], a["train_cfg"], a["data_cfg"], a["arch_params"], a["defenses"], ws)
    old = as_recorded_before(cfg)  # the same training stored before a knob was added records no key for it
    rec = ws.find(a["role"], cfg) or (ws.find(a["role"], old) if old else None)
    return rec.id if rec else None


def check_target_run(ws: Workspace, run_id: str, data: dict, split=None):
    """The run a grid names as its target (`target = { run = ... }`), refused in one line unless it is a
    finished target trained (or imported) on exactly the grid's data."""
    from ..data import load_split
    where = f"target.run {run_id!r}"
    if not ws.exists(run_id):
        raise ParamError(f"{where}: no such run in the workspace {ws.path} (`python -m mivis runs list` lists them)")
    rec = ws.get(run_id)
    if rec.kind != "target":
        article = "an" if rec.kind[:1] in "aeiou" else "a"
        raise ParamError(f"{where} is not a classifier target (it is {article} {rec.kind} run); name a target run "
                         "(trained with --role target or imported with `python -m mivis import-model`)")
    if rec.status != "done":
        raise ParamError(f"{where} is {rec.status}; only a finished target can be attacked")
    from ..checks import check_run_weights
    check_run_weights(ws, rec.id)  # loads on the CPU: a pickle, truncated, NaN or deleted file is refused now
    split = split or load_split(data)
    have = rec.config.get("data") or {}
    size = (rec.config.get("model") or {}).get("img_size", have.get("image_size"))
    if size != split.image_shape[1]:
        raise ParamError(f"{where} takes {size} px images but the grid's data are {split.image_shape[1]} px; "
                         f"set data.image_size = {size} in the grid (with the run's data: {_data_words(have)})")
    if rec.data_fingerprint != split.fingerprint:
        diff = [f"{k} {have.get(k)!r} (grid: {split.config.get(k)!r})" for k in sorted(set(have) | set(split.config))
                if have.get(k) != split.config.get(k)]
        raise ParamError(f"{where} was trained on another data split than the grid's: "
                         + ("; ".join(diff) if diff else "the same settings but other images (data fingerprint "
                            f"{str(rec.data_fingerprint)[:12]} vs {split.fingerprint[:12]})")
                         + "; give the grid the run's data")
    return rec


def _data_words(cfg: dict) -> str:
    return ", ".join(f"{k} = {v!r}" for k, v in cfg.items() if v is not None)


def execute(step: Step, ws: Workspace, runs: dict, reporter: Reporter = NULL) -> str:
    """Run one step whose dependencies are in `runs` (key -> run id); returns the new run id. The runs it
    depends on are leased while it runs (in this process: the sweep's, or a Ray task's), so `runs delete`
    refuses them; a missing one is reported by the step itself, as before."""
    deps = [runs[k] for k in step.deps if k in runs] + ([step.spec["run"]] if step.kind == "existing" else [])
    with ws.lease([d for d in deps if isinstance(d, str)], f"sweep step {step.label or step.kind}", missing_ok=True):
        return _execute(step, ws, runs, reporter)


def _execute(step: Step, ws: Workspace, runs: dict, reporter: Reporter) -> str:
    s = step.spec
    if step.kind == "existing":  # nothing to run: the named run must still be there
        return check_target_run(ws, s["run"], step.meta.get("data") or {}).id
    if step.kind == "train":
        from ..train import train_run
        a = _train_args(step, runs)
        rec = train_run(a["role"], a["train_cfg"], a["data_cfg"], arch_params=a["arch_params"],
                        defenses=a["defenses"], workspace=ws, reporter=reporter, name=step.label)
    elif step.kind == "prior":
        from ..priors import import_prior, train_prior
        if s.get("shipped"):
            rec = import_prior(s["shipped"], ws)
        else:
            rec = train_prior(s["type"], s["params"], None if s["target"] else s["data"],
                              target_run=runs[s["target"]] if s["target"] else None, preset=s["preset"],
                              workspace=ws, reporter=reporter, name=step.label)
    elif step.kind == "attack":
        from ..attacks import attack_run
        rec = attack_run(s["name"], runs[s["target"]], runs[s["prior"]] if s["prior"] else None,
                         params=s["params"], eval_run=runs[s["eval"]], workspace=ws, reporter=reporter,
                         name=step.label)
    elif step.kind == "layers":
        from ..analysis import layers_run
        rec = layers_run(runs[s["target"]], runs[s["attack"]], s["params"], workspace=ws, reporter=reporter)
    else:
        raise ParamError(f"unknown step kind {step.kind!r}")
    StepStore(ws).record(step.key, rec.id, step.kind)
    return rec.id
