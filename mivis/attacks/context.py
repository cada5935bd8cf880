"""Loading what an attack needs, with every refusal made before any compute."""
from __future__ import annotations

import torch

from ..data import load_split
from ..device import resolve_device
from ..params import ParamError
from ..runs import RunRecord, Workspace
from .base import AttackContext

ATTACKABLE = ("target", "eval")


def check_target(ws: Workspace, target_run: str) -> RunRecord:
    rec = ws.get(target_run)
    if rec.kind not in ATTACKABLE:
        what = "a classifier trained on public identities" if rec.kind == "public" else f"a {rec.kind} run"
        raise ParamError(f"run {rec.id} is {what}, not a classifier of the private identities; "
                         f"attack a target run")
    if rec.status != "done":
        raise ParamError(f"target run {rec.id} is {rec.status}; only finished classifiers can be attacked")
    from ..train import classifier_config
    classifier_config(rec)  # a hand-edited config: DamagedRun now, not a KeyError later
    return rec


def check_identities(identities: list[int] | None, num_classes: int) -> list[int]:
    if identities is None or len(identities) == 0:
        return list(range(num_classes))
    bad = sorted({i for i in identities if not 0 <= i < num_classes})
    if bad:
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ParamError(f"identities {', '.join(map(str, bad[:10]))}{more} are outside the target's classes; "
                         f"allowed: 0..{num_classes - 1}")
    if len(set(identities)) != len(identities):
        raise ParamError("identities: each identity may be listed once (use restarts for more latents)")
    return list(identities)


def check_prior(ws: Workspace, prior_run: str, target: RunRecord) -> RunRecord:
    rec = ws.get(prior_run)
    if rec.kind != "prior":
        raise ParamError(f"run {rec.id} is a {rec.kind} run, not a prior")
    if rec.status != "done":
        raise ParamError(f"prior run {rec.id} is {rec.status}; only finished priors can be used")
    from ..priors.store import prior_info
    info = prior_info(rec)  # checked: DamagedRun when missing, corrupt or not a mivis prior description
    net, m = info["net"], target.config["model"]
    from ..priors.adapt import output_shape
    if output_shape(info) != (m["img_size"], m["in_chans"]):
        size, chans = output_shape(info)
        raise ParamError(f"prior {rec.id} makes {size} px images with {chans} channel(s), "
                         f"but target {target.id} takes {m['img_size']} px with {m['in_chans']}; "
                         "train or pick a prior for the target's resolution and channels")
    private = set(_private_names(ws, target))
    leaked = sorted(private & set(info.get("public", [])))
    if leaked:
        raise ParamError(f"prior {rec.id} was trained on identities that are private to target {target.id} "
                         f"({', '.join(leaked[:5])}); the attacker may only use public identities")
    if net.get("conditional") and net["num_classes"] != m["num_classes"]:
        raise ParamError(f"conditional prior {rec.id} has {net['num_classes']} classes, target {target.id} "
                         f"{m['num_classes']}")
    return rec


def _private_names(ws: Workspace, target: RunRecord) -> list[str]:
    import json
    try:
        return json.loads(target.file("split.json").read_text())["private"]
    except (OSError, ValueError, KeyError):
        return load_split(target.config["data"]).private_names


def build_context(ws: Workspace, target: RunRecord, prior_rec: RunRecord | None, device: str,
                  reporter=None) -> AttackContext:
    from ..priors import load_prior
    from ..train import load_classifier
    dev = resolve_device(device)
    model, _ = load_classifier(ws, target.id, dev)
    model.requires_grad_(False)
    prior = load_prior(ws, prior_rec.id, dev) if prior_rec is not None else None
    m = target.config["model"]
    split = load_split(target.config["data"])
    return AttackContext(model, target, prior, dev, m["num_classes"], (m["in_chans"], m["img_size"], m["img_size"]),
                         split=split, workspace=ws, reporter=reporter)


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    module.eval().requires_grad_(False)
    return module


def pick_prior(ws: Workspace, target: RunRecord, need: str) -> str:
    """A prior that fits this target: a finished prior run in the workspace (newest first; for
    kedmi/plgmi priors the ones made for this target), else a shipped prior from assets/priors/."""
    from ..priors import import_prior, shipped_priors
    want_conditional = need == "conditional"
    fits = []
    for rec in ws.list(kind="prior", status="done"):
        try:
            check_prior(ws, rec.id, target)
        except ParamError:
            continue
        if bool(rec.config["net"]["conditional"]) != want_conditional:
            continue
        own = rec.config.get("target_run") in (None, target.id)
        fits.append((not own, rec.id))
    if fits:
        return sorted(fits, key=lambda f: f[0])[0][1]
    m = target.config["model"]
    for name in shipped_priors():
        import json
        from ..priors.store import ASSETS
        net = json.loads((ASSETS / name / "prior.json").read_text())["net"]
        if (net["img_size"], net["channels"], bool(net["conditional"])) == (m["img_size"], m["in_chans"],
                                                                          want_conditional):
            rec = import_prior(ASSETS / name, ws)
            try:
                check_prior(ws, rec.id, target)
                return rec.id
            except ParamError:
                continue
    import json

    from ..priors.adapt import pick_shipped  # no shipped prior of this shape: adapt the closest one (labelled)
    from ..priors.store import ASSETS
    name = pick_shipped(m["img_size"], m["in_chans"], want_conditional, shipped_priors(),
                        lambda n: json.loads((ASSETS / n / "prior.json").read_text())["net"])
    if name is not None:
        rec = import_prior(ASSETS / name, ws, adapt_to=(m["img_size"], m["in_chans"]))
        try:
            check_prior(ws, rec.id, target)
            return rec.id
        except ParamError:
            pass
    kind = "plgmi --target " + target.id if want_conditional else "gmi"
    raise ParamError(f"no prior fits target {target.id} ({m['img_size']} px, {m['in_chans']} channel(s)); train one: "
                     f"python -m mivis prior train --type {kind} --image-size {m['img_size']}")
