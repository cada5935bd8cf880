"""The built-in job kinds: train, attack, prior, layers, classroom. Each validates its params in the
submitting thread (before anything is queued) and calls the library layer that does the work."""
from __future__ import annotations

from ..params import ParamError
from ..runs import RunError, Workspace
from .kinds import JobContext, job_kind
from .previews import _Preview


def _validate_train(params: dict, ws: Workspace) -> dict:
    """Everything `train_run` would refuse, refused now: `prepare_training` validates every
    setting (data, architecture, each defense against the training config) and builds the model."""
    from ..train import prepare_training
    p = dict(params)
    unknown = set(p) - {"role", "train", "data", "arch_params", "defenses", "name"}
    if unknown:
        raise ParamError(f"unknown training job field(s): {', '.join(sorted(unknown))}")
    role = p.get("role", "target")
    train = dict(p.get("train") or {})
    if train.get("init_weights"):  # a path on the server: only inside the allowed data roots
        from ..data._folder import allowed_path
        train["init_weights"] = str(allowed_path(train["init_weights"], "init_weights"))
    cfg, split, _, _, _, _, model, init = prepare_training(role, train, p.get("data"), p.get("arch_params"),
                                                           p.get("defenses"), ws)
    # load the starting weights now, as train_run will: a bad file is refused at submit, not in the job
    if init is not None:
        from ..train import load_init_weights
        from ..checks import check_run_weights
        check_run_weights(ws, init.id)
        load_init_weights(model, ws, init)
    if cfg["init_weights"]:
        from ..pretrained import load_pretrained_body
        load_pretrained_body(model, cfg["init_weights"], cfg["arch"])
    return {"role": role, "train": cfg, "data": split.config, "arch_params": dict(p.get("arch_params") or {}),
            "defenses": dict(p.get("defenses") or {}), "name": str(p.get("name") or "")}


@job_kind("train", validate=_validate_train, help="train a classifier (target, evaluation or public model)")
def _train_job(params: dict, ctx: JobContext) -> dict:
    from ..train import train_run
    train = dict(params["train"])
    if train.get("device") == "auto":
        train["device"] = "cuda" if ctx.device.startswith("cuda") else "cpu"
    rec = train_run(params["role"], train, params["data"], arch_params=params["arch_params"],
                    defenses=params["defenses"], workspace=ctx.workspace, reporter=ctx.reporter,
                    name=params.get("name", ""))
    return {"run_id": rec.id, "metrics": rec.metrics}



ATTACK_FIELDS = {"attack", "target_run", "prior_run", "eval_run", "params", "name"}


def _validate_attack(params: dict, ws: Workspace) -> dict:
    from ..attacks import plan_attack
    from ..evaluation import check_judge, pick_eval_run
    p = dict(params)
    unknown = set(p) - ATTACK_FIELDS
    if unknown:
        raise ParamError(f"unknown attack job field(s): {', '.join(sorted(unknown))}")
    if not p.get("target_run"):
        raise ParamError("choose a target run to attack")
    plan = plan_attack(p.get("attack", "gmi"), p["target_run"], p.get("prior_run"), params=p.get("params"),
                       workspace=ws)
    eval_run = p.get("eval_run") or pick_eval_run(ws, plan.target)
    check_judge(ws, eval_run, plan.target)
    from ..checks import check_run_weights
    for rid in (plan.target.id, plan.prior.id if plan.prior else None, eval_run):
        if rid:
            check_run_weights(ws, rid)  # unloadable weights: refused at submit, no failed run left
    return {"attack": plan.attack, "target_run": plan.target.id, "prior_run": plan.prior.id if plan.prior else None,
            "eval_run": eval_run, "params": plan.params, "name": str(p.get("name") or "")}


@job_kind("attack", validate=_validate_attack, help="invert a target with a registered attack; evaluated and stored")
def _attack_job(params: dict, ctx: JobContext) -> dict:
    from ..attacks import attack_run
    p = dict(params["params"])
    if p.get("device") == "auto":
        p["device"] = "cuda" if ctx.device.startswith("cuda") else "cpu"
    rec = attack_run(params["attack"], params["target_run"], params["prior_run"], params=p,
                     eval_run=params["eval_run"], workspace=ctx.workspace, reporter=ctx.reporter,
                     on_step=_Preview(ctx), hook_every=max(1, p.get("iterations", 100) // 60),
                     name=params.get("name", ""))
    keep = ("attack_acc_top1", "attack_acc_top5", "target_likelihood", "attack_seconds", "evaluate_seconds")
    return {"run_id": rec.id, "metrics": {k: rec.metrics[k] for k in keep if k in rec.metrics}}


PRIOR_FIELDS = {"type", "params", "data", "target_run", "preset", "name"}


def _validate_prior(params: dict, ws: Workspace) -> dict:
    from ..priors import prepare_prior
    p = dict(params)
    unknown = set(p) - PRIOR_FIELDS
    if unknown:
        raise ParamError(f"unknown prior job field(s): {', '.join(sorted(unknown))}")
    ptype = p.get("type", "gmi")
    prm, split, target = prepare_prior(ptype, p.get("params"), p.get("data"), p.get("target_run"), ws,
                                       p.get("preset"))
    if target is not None:
        from ..checks import check_run_weights
        check_run_weights(ws, target.id)
    return {"type": ptype, "params": prm, "data": None if target else split.config,
            "target_run": target.id if target else None, "preset": None, "name": str(p.get("name") or "")}


@job_kind("prior", validate=_validate_prior, help="train an image prior on the public identities")
def _prior_job(params: dict, ctx: JobContext) -> dict:
    from ..priors import train_prior
    p = dict(params["params"])
    if p.get("device") == "auto":
        p["device"] = "cuda" if ctx.device.startswith("cuda") else "cpu"
    rec = train_prior(params["type"], p, params["data"], target_run=params["target_run"], workspace=ctx.workspace,
                      reporter=ctx.reporter, name=params.get("name", ""))
    return {"run_id": rec.id}


def _validate_layers(params: dict, ws: Workspace) -> dict:
    from ..analysis import LAYERS_PARAMS
    p = dict(params)
    unknown = set(p) - {"target_run", "attack_run", "params", "name"}
    if unknown:
        raise ParamError(f"unknown layers job field(s): {', '.join(sorted(unknown))}")
    target = ws.get(p.get("target_run") or "")
    if target.kind not in ("target", "eval") or target.status != "done":
        raise ParamError(f"run {target.id} is a {target.status} {target.kind} run; a finished target is needed")
    if p.get("attack_run"):
        a = ws.get(p["attack_run"])
        if a.kind != "attack" or a.status != "done" or a.config.get("target_run") != target.id:
            raise ParamError(f"run {a.id} is not a finished attack on target {target.id}")
        a.read_tensors("reconstructions.safetensors")
    from ..device import resolve_device
    from ..checks import check_run_weights
    check_run_weights(ws, target.id)
    lp = LAYERS_PARAMS.validate(p.get("params"), context="layers analysis")
    resolve_device(lp["device"])
    return {"target_run": target.id, "attack_run": p.get("attack_run") or None,
            "params": LAYERS_PARAMS.validate(p.get("params"), context="layers analysis"),
            "name": str(p.get("name") or "")}


@job_kind("layers", validate=_validate_layers, help="Fisher information per layer and gradient flow per stage")
def _layers_job(params: dict, ctx: JobContext) -> dict:
    from ..analysis import layers_run
    p = dict(params["params"])
    if p.get("device") == "auto":
        p["device"] = "cuda" if ctx.device.startswith("cuda") else "cpu"
    rec = layers_run(params["target_run"], params["attack_run"], p, workspace=ctx.workspace,
                     reporter=ctx.reporter, name=params.get("name", ""))
    return {"run_id": rec.id}


def _validate_classroom(params: dict, ws: Workspace) -> dict:
    from ..classroom import CLASSROOM_DATA
    from ..data import load_split
    from ..priors import shipped_priors
    if params:
        raise ParamError("the classroom set-up takes no parameters")
    load_split(CLASSROOM_DATA)  # the embedded ORL faces must be readable
    if not any("32" in n for n in shipped_priors()):
        raise ParamError("no shipped 32 px prior in assets/priors/; train one on the Attack page instead")
    return {}


@job_kind("classroom", validate=_validate_classroom, single=True,
          help="the default ORL set-up: the shipped ResNet-18 target and VGG-11 judge at 32 px (trained here "
               "when they are not shipped), and the shipped prior")
def _classroom_job(params: dict, ctx: JobContext) -> dict:
    from ..classroom import CLASSROOM_DATA, STEPS, find_trained, import_classroom, shipped
    from ..data import DataError, load_split
    from ..weights import WeightsError
    from ..priors import import_prior, shipped_priors
    from ..train import train_run
    ids: dict[str, str] = {}
    try:
        if shipped() is not None:
            ctx.reporter.report(force=True, phase="importing the shipped target and judge", fraction=0.0)
            ids = import_classroom(ctx.workspace)
    except (RunError, WeightsError, DataError) as e:  # a broken shipment: say so, then train instead
        ctx.reporter.report(force=True, phase="training", note=f"shipped models not used: {e}"[:300])
        ids = {}
    data = load_split(CLASSROOM_DATA).config
    dev = "cuda" if ctx.device.startswith("cuda") else "cpu"
    for i, (role, train, name, label, _) in enumerate(STEPS, 1):
        if role in ids:
            continue
        found = find_trained(ctx.workspace, role, train, data)
        if found is None:
            found = train_run(role, {**train, "device": dev}, data, workspace=ctx.workspace, name=name,
                              reporter=ctx.reporter.child(part=role, part_index=i, parts=len(STEPS),
                                                          part_label=label)).id
        ids[role] = found
    prior = import_prior(next(n for n in shipped_priors() if "32" in n), ctx.workspace)
    return {"run_id": ids["target"], "eval_run": ids["eval"], "prior_run": prior.id}


def _validate_ceiling(params: dict, ws: Workspace) -> dict:
    from ..checks import check_run_weights
    from ..analysis.ceiling import plan_ceiling
    p = dict(params)
    unknown = set(p) - {"prior_run", "eval_run", "params", "name"}
    if unknown:
        raise ParamError(f"unknown ceiling job field(s): {', '.join(sorted(unknown))}")
    if not p.get("prior_run"):
        raise ParamError("choose a prior whose ceiling to measure")
    plan = plan_ceiling(ws, p["prior_run"], p.get("eval_run"), p.get("params"))
    for rid in (plan.prior.id, plan.eval.id if plan.eval else None):
        if rid:
            check_run_weights(ws, rid)
    return {"prior_run": plan.prior.id, "eval_run": plan.eval.id if plan.eval else "none", "params": plan.params,
            "name": str(p.get("name") or "")}


@job_kind("ceiling", validate=_validate_ceiling,
          help="a prior's ceiling per judge: its projections of the private training images, judged "
               "(a diagnostic of the prior, never an attack)")
def _ceiling_job(params: dict, ctx: JobContext) -> dict:
    from ..analysis.ceiling import ceiling_run
    p = dict(params["params"])
    if p.get("device") == "auto":
        p["device"] = "cuda" if ctx.device.startswith("cuda") else "cpu"
    rec = ceiling_run(params["prior_run"], params["eval_run"], p, workspace=ctx.workspace, reporter=ctx.reporter,
                      name=params.get("name", ""))
    return {"run_id": rec.id}
