"""The "layers" analysis of a target: Fisher information per layer (classification vs MI, and MI
across attack iterations) and gradient flow per stage during an attack. Stored as a run.

MI quantities over attack iterations come from the snapshots the attack run stored while it ran
(attacks/snapshots.py); an attack run from before those were stored is re-run with its exact
configuration and a step hook (same latents, identities and seeds).
"""
from __future__ import annotations

import time

import torch

from ..data import load_split
from ..params import Param, ParamError, ParamSet
from ..progress import NULL, Reporter
from ..runs import RunRecord, Workspace
from ..attacks.base import ATTACKS
from ..attacks.snapshots import snapshot_iterations
from ..surgery.layers import layer_groups
from .fisher import concentration, cross_entropy, fisher_per_layer
from .gradflow import gradient_flow

LAYERS_PARAMS = ParamSet([
    Param("fi_samples", int, 0, "private training images for classification Fisher information (0 = all)",
          min=0, max=1_000_000),
    Param("fi_batch_size", int, 1, "images per gradient: 1 = empirical Fisher (per-sample squared "
          "gradients); larger is faster and coarser", min=1, max=1024),
    Param("mi_samples", int, 40, "reconstructions used for MI Fisher information and gradient flow at "
          "each snapshot", min=1, max=100_000),
    Param("snapshots", int, 6, "attack iterations (log-spaced) at which MI Fisher information and gradient "
          "flow are measured; 0 = only the final reconstructions", min=0, max=100),
    Param("device", str, "auto", "where to compute", choices=("auto", "cpu", "cuda")),
])


def _layers(model):
    params = dict(model.named_parameters())
    return [(g["name"], [params[p] for p in g["params"]]) for g in layer_groups(model)]


def _attack_loss(attack_rec: RunRecord):
    """The attack's own identity loss (per sample), rebuilt from its recorded parameters."""
    from ..attacks import ATTACKS
    cls = ATTACKS.get(attack_rec.config["attack"]["name"]).obj
    probe = cls.__new__(cls)
    probe.p = attack_rec.config["attack"]["params"]
    return probe.identity_loss


def layers_run(target_run: str, attack_run: str | None = None, params: dict | None = None, *,
               workspace: Workspace | None = None, reporter: Reporter = NULL, name: str = "") -> RunRecord:
    from ..device import resolve_device
    from ..train import load_classifier
    ws = workspace or Workspace()
    p = LAYERS_PARAMS.validate(params, context="layers analysis")
    device = resolve_device(p["device"])
    target = ws.get(target_run)
    attack = ws.get(attack_run) if attack_run else None
    if attack is not None:
        if attack.kind != "attack" or attack.status != "done":
            raise ParamError(f"run {attack.id} is a {attack.status} {attack.kind} run; a finished attack is needed")
        if attack.config["target_run"] != target.id:
            raise ParamError(f"attack run {attack.id} attacked {attack.config['target_run']}, not {target.id}")
        attack.read_tensors("reconstructions.safetensors")  # damaged: refused before a run exists
    model, target = load_classifier(ws, target_run, device)
    model = model.float().to(memory_format=torch.contiguous_format)
    for q in model.parameters():
        q.requires_grad_(True)
    config = {"type": "layers", "target_run": target.id, "attack_run": attack_run, "params": p}
    run = ws.create("analysis", config, parents=[target.id] + ([attack.id] if attack else []),
                    data_fingerprint=target.data_fingerprint, name=name or "layers: Fisher information, gradient flow")
    try:
        t0 = time.monotonic()
        split = load_split(target.config["data"])
        train = split.train.take(slice(0, p["fi_samples"] or None))  # folder data stays lazy
        x, y = train.x, train.y
        layers = _layers(model)
        out = {"layers": [n for n, _ in layers], "layer_params": [sum(t.numel() for t in ps) for _, ps in layers],
               "classification": fisher_per_layer(model, layers, x, y, cross_entropy, p["fi_batch_size"],
                                                  reporter.child(part="classification"))}
        metrics = {"fi_classification_first_half": concentration(out["classification"])}
        if attack is not None:
            out.update(_mi_part(ws, model, layers, attack, p, reporter))
            metrics["fi_mi_first_half"] = concentration(out["mi_final"])
        metrics["seconds"] = round(time.monotonic() - t0, 2)
        run.write_json("layers.json", out)
        run.finish(metrics)
    except BaseException as e:
        run.fail_from(e)
        raise
    return run.record()


def _mi_part(ws, model, layers, attack: RunRecord, p: dict, reporter: Reporter) -> dict:
    loss_fn = _attack_loss(attack)
    device = next(model.parameters()).device
    rec = attack.read_tensors("reconstructions.safetensors")
    xr, yr = rec["x"].float()[:p["mi_samples"]], rec["y"][:p["mi_samples"]]
    out = {"mi_loss": attack.config["attack"]["params"].get("loss", "attack default"),
           "mi_final": fisher_per_layer(model, layers, xr, yr, loss_fn, p["fi_batch_size"],
                                        reporter.child(part="mi_final")),
           "mi_snapshots": [], "gradflow": []}
    out["gradflow_final"] = _flow(model, xr.to(device), yr.to(device), loss_fn)
    if not p["snapshots"]:
        return out
    if ATTACKS.get(attack.config["attack"]["name"]).obj.gradient_free:
        out["mi_snapshots_note"] = "a gradient-free attack (posterior mean): no optimisation to take snapshots of"
        return out
    if (attack.dir / "snapshots.safetensors").exists():
        return _from_snapshots(model, layers, attack, p, loss_fn, out, reporter)
    from ..attacks.invert import invert  # an attack run from before snapshots were stored: replay it
    cfg = attack.config
    iters = cfg["attack"]["params"]["iterations"]
    wanted = set(snapshot_iterations(iters, p["snapshots"]))

    def hook(ev):
        if ev.iteration not in wanted or int(ev.index[0]) != 0:  # first chunk only: same latents each time
            return
        xs, ys = ev.x[:p["mi_samples"]].float(), ev.y[:p["mi_samples"]]
        rows = fisher_per_layer(model, layers, xs, ys, loss_fn, p["fi_batch_size"])
        out["mi_snapshots"].append({"iteration": ev.iteration + 1, "rows": rows})
        flow = _flow(model, xs.to(device), ys.to(device), loss_fn)
        flow["iteration"] = ev.iteration + 1
        flow["latent_grad_norm"] = float(ev.grad_norm[:p["mi_samples"]].float().mean())
        out["gradflow"].append(flow)
    from ..attacks.base import replay_params
    params = replay_params(cfg["attack"])  # the stored run's own method version (issue 13)
    invert(cfg["attack"]["name"], cfg["target_run"], cfg["prior_run"], params=params, workspace=ws,
           reporter=reporter.child(part="attack replay"), on_step=hook, hook_every=1)
    return out


def _from_snapshots(model, layers, attack: RunRecord, p: dict, loss_fn, out: dict, reporter: Reporter) -> dict:
    """MI Fisher information and gradient flow at the iterations the attack stored (seconds, no replay)."""
    device = next(model.parameters()).device
    snap = attack.read_tensors("snapshots.safetensors", ("images", "labels", "iteration", "latent_grad_norm"))
    if snap["images"].ndim != 5 or snap["images"].shape[:2] != snap["latent_grad_norm"].shape[:2]:
        from ..runs import DamagedRun
        raise DamagedRun(attack.id, f"snapshots.safetensors has inconsistent shapes ({tuple(snap['images'].shape)})")
    stored = snap["iteration"].tolist()
    out["snapshot_source"] = "stored by the attack run"
    for k, i in enumerate(snapshot_iterations(len(stored), p["snapshots"])):
        reporter.check()
        reporter.report(phase="snapshots", step=k + 1, steps=min(p["snapshots"], len(stored)))
        xs, ys = snap["images"][i][:p["mi_samples"]].float(), snap["labels"][:p["mi_samples"]]
        rows = fisher_per_layer(model, layers, xs, ys, loss_fn, p["fi_batch_size"])
        out["mi_snapshots"].append({"iteration": int(stored[i]), "rows": rows})
        flow = _flow(model, xs.to(device), ys.to(device), loss_fn)
        flow["iteration"] = int(stored[i])
        flow["latent_grad_norm"] = float(snap["latent_grad_norm"][i][:p["mi_samples"]].mean())
        out["gradflow"].append(flow)
    return out


def _flow(model, x, y, loss_fn) -> dict:
    leaf = x.detach().clone().requires_grad_(True)
    return gradient_flow(model, lambda: loss_fn(model(leaf), y).mean(), latent=None)
