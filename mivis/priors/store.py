"""Prior runs: train (registry run with progress/cancel), load, and import/export shipped weights.

A prior run's folder holds generator.safetensors (EMA weights), discriminator.safetensors,
prior.json (the net config + data record, enough to rebuild both nets), samples.png and
history.json. Shipped priors live in assets/priors/<name>/ with the same three files.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from ..data import load_split
from ..device import resolve_device
from ..params import ParamError
from ..progress import NULL, Reporter
from ..runs import DamagedRun, RunError, RunRecord, Workspace
from ..weights import WeightsError, load_into
from .base import PRIORS, Prior, build_nets, check_policy, net_config
from .nets import bake_spectral_norm, fold_batchnorm

from ..paths import assets_dir
ASSETS = assets_dir() / "priors"
FILES = ("generator.safetensors", "discriminator.safetensors", "prior.json")

PRESETS = {
    # the default prior: train it on a GPU (~4 min on an H100) and ship it in assets/priors/
    "default": {"iterations": 9000, "batch_size": 64},
    # a CPU-trainable prior (32 px: ~10-15 min on 2 cores); crude but usable for classroom attacks
    "cpu": {"iterations": 3000, "batch_size": 64},
    # seconds: for tests and smoke runs only (produces blobs)
    "smoke": {"iterations": 20, "batch_size": 16},
}


MAX_NUM_CLASSES = 100_000


def check_net_config(net) -> str | None:
    """What is wrong with a prior's net description (prior.json "net"), or None. Checked like
    parameters: known types, every field's type and range, before any net is built."""
    from .nets import RESOLUTIONS
    if not isinstance(net, dict):
        return "its net description is not a JSON object"
    t = net.get("type")
    if not isinstance(t, str) or t not in PRIORS:
        return f"type {str(t)[:40]!r} is not a prior type ({', '.join(PRIORS.names())})"
    if t == "pca":
        return _check_pca_config(net)
    heads = {"gmi": "none", "kedmi": "classes", "plgmi": "projection"}
    want = {"z_dim": int, "img_size": int, "channels": int, "g_width": int, "d_width": int, "num_classes": int,
            "conditional": bool, "d_head": str, "spectral_norm": bool, "loss": str}
    for k, typ in want.items():
        v = net.get(k)
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            return f"{k} is {str(v)[:40]!r}, not a{'n' if typ is int else ''} {typ.__name__}"
    params = PRIORS.get(t).params
    for k in ("z_dim", "g_width", "d_width", "loss") + (("objective",) if "objective" in net else ()):
        try:
            params[k].check(net[k])
            if not isinstance(net[k], params[k].type):
                raise ParamError(f"{k}: {net[k]!r} is not {params[k].allowed()}")
        except ParamError as e:
            return str(e)
        except KeyError:
            return f"{k} does not apply to a {t} prior"
    if net["img_size"] not in RESOLUTIONS:
        return f"img_size {net['img_size']} is not one of {', '.join(map(str, RESOLUTIONS))}"
    if net["channels"] not in (1, 3):
        return f"channels {net['channels']} is not 1 or 3"
    if not 0 <= net["num_classes"] <= MAX_NUM_CLASSES:
        return f"num_classes {net['num_classes']} is not in 0..{MAX_NUM_CLASSES}"
    if net["d_head"] != heads[t] or net["conditional"] != (t == "plgmi"):
        return f"d_head {net['d_head']!r} / conditional {net['conditional']} do not match a {t} prior"
    if heads[t] != "none" and net["num_classes"] < 1:
        return f"a {t} prior needs num_classes >= 1"
    return None


def _check_pca_config(net: dict) -> str | None:
    from .pca import MAX_PIXELS
    for k, typ in {"z_dim": int, "img_size": int, "channels": int, "flip": bool, "conditional": bool}.items():
        v = net.get(k)
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            return f"{k} is {str(v)[:40]!r}, not a{'n' if typ is int else ''} {typ.__name__}"
    if net["channels"] not in (1, 3):
        return f"channels {net['channels']} is not 1 or 3"
    if not 8 <= net["img_size"] <= 256 or net["channels"] * net["img_size"] ** 2 > MAX_PIXELS:
        return f"img_size {net['img_size']} is not in 8..256"
    if not 1 <= net["z_dim"] <= net["channels"] * net["img_size"] ** 2:
        return f"z_dim {net['z_dim']} is not in 1..{net['channels'] * net['img_size'] ** 2}"
    if net["conditional"] or net.get("num_classes", 0):
        return "a pca prior is unconditional"
    return None


def check_prior_info(info) -> str | None:
    """What is wrong with a prior.json (net + data record), or None."""
    from ..data import DATA_PARAMS
    if not isinstance(info, dict):
        return "prior.json is not a JSON object"
    problem = check_net_config(info.get("net"))
    if problem:
        return f"prior.json: {problem}"
    try:
        DATA_PARAMS.validate(info.get("data"), context="prior.json data")
    except (ParamError, TypeError, ValueError) as e:
        return f"prior.json data: {str(e)[:200]}"
    from .adapt import check_adapt
    problem = check_adapt(info.get("adapt"), info["net"])
    if problem:
        return f"prior.json: {problem}"
    for k in ("public", "private_excluded"):
        v = info.get(k, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            return f"prior.json {k} is not a list of identity names"
    return None


def prior_info(rec: RunRecord) -> dict:
    """A prior run's prior.json, checked (DamagedRun naming the run and what is wrong)."""
    info = rec.read_json("prior.json")
    problem = check_prior_info(info)
    if problem:
        raise DamagedRun(rec.id, problem)
    return info


def prepare_prior(ptype: str, params: dict | None, data_cfg: dict | None, target_run: str | None,
                  ws: Workspace, preset: str | None = None):
    """Validate everything (before any compute): returns (params, split, target record or None)."""
    from ..train import load_classifier  # noqa: F401  (imported for the error types only)
    entry = PRIORS.get(ptype)
    given = dict(params or {})
    if preset and ptype != "pca":  # the presets size a GAN's training loop; a PCA fit has none
        if preset not in PRESETS:
            raise ParamError(f"preset: {preset!r} is not one of {', '.join(PRESETS)}")
        given = {**PRESETS[preset], **given}
    p = entry.params.validate(given, context=f"prior {ptype}")
    if "diffaug" in p:
        p["diffaug"] = check_policy(p["diffaug"])
    resolve_device(p["device"])
    target = None
    if entry.meta.get("needs_target"):
        if not target_run:
            raise ParamError(f"a {ptype} prior is trained with a target model's labels: give target_run")
        target = ws.get(target_run)
        if target.kind != "target" or target.status != "done":
            raise ParamError(f"target_run {target.id} is a {target.status} {target.kind} run; "
                             "a finished target classifier is needed")
        from ..train import check_classifier_weights
        check_classifier_weights(ws, target.id)  # unloadable target weights: refused before a prior run exists
        if data_cfg and {**target.config["data"], **data_cfg} != target.config["data"]:
            raise ParamError(f"a {ptype} prior uses its target's data split; do not pass other data settings")
        data_cfg = target.config["data"]
    elif target_run:
        raise ParamError(f"a {ptype} prior does not use a target model; leave target_run empty")
    split = load_split(data_cfg)
    c, h, _ = split.image_shape
    if len(split.public) < 2:
        raise ParamError("the public set has fewer than 2 images; a prior cannot be trained")
    net_config(ptype, p, h, c, split.num_classes, len(split.public))  # refuses unsupported resolutions
    return p, split, target


def train_prior(ptype: str, params: dict | None = None, data_cfg: dict | None = None, *,
                target_run: str | None = None, preset: str | None = None, workspace: Workspace | None = None,
                reporter: Reporter = NULL, name: str = "") -> RunRecord:
    from .gan_train import train_gan
    from .variants import build_variant
    from ..grid import grid_png
    ws = workspace or Workspace()
    p, split, target = prepare_prior(ptype, params, data_cfg, target_run, ws, preset)
    c, h, _ = split.image_shape
    ncfg = net_config(ptype, p, h, c, split.num_classes, len(split.public))
    config = {"type": ptype, "params": p, "data": split.config, "net": ncfg, "preset": preset,
              "target_run": target.id if target else None}
    run = ws.create("prior", config, parents=[target.id] if target else [], seed=p["seed"],
                    data_fingerprint=split.fingerprint, name=name or f"{ptype} prior {h}px")
    run.write_json("split.json", split.record())
    try:
        device = resolve_device(p["device"])
        torch.manual_seed(p["seed"])
        G, D = build_nets(ncfg)
        if ptype == "pca":
            _fit_pca_run(run, G, D, p, ncfg, split, device, reporter)
            return run.record()
        variant = build_variant(ptype, p, split, ws, target, device)
        g = torch.Generator().manual_seed(p["seed"] + 7)
        fixed_z = torch.randn(64, ncfg["z_dim"], generator=g)
        fixed_y = (torch.arange(64) % ncfg["num_classes"]) if ncfg["conditional"] else None
        t0 = time.monotonic()
        res = train_gan(G, D, split.public.x, p, device, variant, reporter, fixed_z, fixed_y)
        seconds = time.monotonic() - t0
        meta = {"prior_type": ptype, "net": ncfg, "run": run.id}
        run.save_weights(res.G.state_dict(), meta, name="generator.safetensors")
        run.save_weights(res.D.state_dict(), meta, name="discriminator.safetensors")
        run.write_json("prior.json", _prior_json(ncfg, split, target))
        run.write_json("history.json", res.history)
        run.write_bytes("samples.png", grid_png(res.snapshots[-1][1], 8, scale=2 if h <= 32 else 1))
        for it, imgs in res.snapshots[:-1]:
            run.write_bytes(f"samples/iter{it:06d}.png", grid_png(imgs, 8))
        if variant.pairs is not None:
            run.write_json("pseudo_labels.json", variant.pairs.tolist())
        last = res.history[-1] if res.history else {}
        run.finish({"train_seconds": round(seconds, 2), "device": str(device), "iterations": p["iterations"],
                    "d_loss": last.get("d_loss"), "g_loss": last.get("g_loss"),
                    "g_params": sum(x.numel() for x in res.G.parameters()),
                    "d_params": sum(x.numel() for x in res.D.parameters())})
    except BaseException as e:
        run.fail_from(e)
        raise
    return run.record()


def _fit_pca_run(run, G, D, p: dict, ncfg: dict, split, device, reporter: Reporter) -> None:
    from ..grid import grid_png
    from .pca import fit_pca
    t0 = time.monotonic()
    info = fit_pca(G, D, split.public.x, p["flip"], device, reporter)
    meta = {"prior_type": "pca", "net": ncfg, "run": run.id}
    run.save_weights(G.state_dict(), meta, name="generator.safetensors")
    run.save_weights(D.state_dict(), meta, name="discriminator.safetensors")
    run.write_json("prior.json", _prior_json(ncfg, split, None))
    z = torch.randn(64, ncfg["z_dim"], generator=torch.Generator().manual_seed(p["seed"] + 7))
    with torch.no_grad():
        run.write_bytes("samples.png", grid_png(G(z), 8, scale=2 if ncfg["img_size"] <= 32 else 1))
    run.finish({"train_seconds": round(time.monotonic() - t0, 2), "device": str(device), "iterations": 0,
                **info, "g_params": 0, "d_params": 0})


def _prior_json(ncfg: dict, split, target: RunRecord | None) -> dict:
    return {"format": "mivis-prior-1", "net": ncfg, "data": split.config, "public": split.public_names,
            "private_excluded": split.private_names, "data_fingerprint": split.fingerprint,
            "target_run": target.id if target else None}


def check_prior_weights(ws: Workspace, run_id: str) -> None:
    """Load a finished prior's weights once, on the CPU, so that an unloadable run is refused
    (DamagedRun naming it) before a new run or job that needs it is created."""
    from ..runs import refused_as_damage
    rec = ws.get(run_id)
    with refused_as_damage(rec):
        load_prior(ws, rec.id, "cpu")


def finished_prior(ws: Workspace, run_id: str, use: str = "can be used") -> RunRecord:
    """The run's record if it is a finished prior; else one ParamError ("only finished priors <use>")."""
    rec = ws.get(run_id)
    if rec.kind != "prior":
        raise ParamError(f"run {run_id} is a {rec.kind} run, not a prior")
    if rec.status != "done":
        raise ParamError(f"prior run {run_id} is {rec.status}; only finished priors {use}")
    return rec


def load_prior(ws: Workspace, run_id: str, device: str | torch.device = "cpu") -> Prior:
    """Rebuild G and D from the stored config and load their safetensors (checked key by key)."""
    rec = finished_prior(ws, run_id)
    info = prior_info(rec)
    ncfg = info["net"]
    G, D = build_nets(ncfg)
    for net, f in ((G, "generator.safetensors"), (D, "discriminator.safetensors")):
        if not rec.file(f).is_file():
            raise DamagedRun(rec.id, f"{f} is missing")
        load_into(net, rec.file(f))
    D.eval()
    if ncfg["type"] != "pca":
        bake_spectral_norm(D)
        fold_batchnorm(G.eval())
    G.eval()
    from .adapt import wrap
    G, D = wrap(G, D, ncfg, info.get("adapt"))  # a shipped prior adapted to another size / channel count
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    for m in (G, D):
        m.requires_grad_(False)
    return Prior(G, D, ncfg, {"run": rec.id, **{k: v for k, v in info.items() if k != "net"}}).to(dev)


def export_prior(ws: Workspace, run_id: str, dest: str | Path) -> Path:
    """Copy a finished prior's weights + prior.json (+ samples.png) to a folder, e.g. assets/priors/<name>."""
    rec = ws.get(run_id)
    if rec.kind != "prior" or rec.status != "done":
        raise ParamError(f"run {run_id} is a {rec.status} {rec.kind} run; a finished prior is needed")
    info = prior_info(rec)
    for f in FILES + ("samples.png",):
        if not rec.file(f).is_file():
            raise DamagedRun(rec.id, f"{f} is missing")
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ParamError(f"export destination {dest} exists and is not a folder")
    info["exported_from"] = {"run": rec.id, "config": rec.config, "metrics": rec.metrics, "versions": rec.versions}
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for f in FILES[:2] + ("samples.png",):
            _copy_atomic(rec.file(f), dest / f)
        _write_atomic(dest / "prior.json", json.dumps(info, indent=1).encode())
    except OSError as e:
        raise ParamError(f"cannot export to {dest}: {e.strerror or e}") from None
    return dest


def _write_atomic(path: Path, data: bytes) -> None:
    from ..weights import atomic_path
    tmp = atomic_path(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _copy_atomic(src: Path, dst: Path) -> None:
    _write_atomic(dst, src.read_bytes())


def shipped_priors() -> list[str]:
    return sorted(d.name for d in ASSETS.iterdir() if (d / "prior.json").is_file()) if ASSETS.is_dir() else []


def import_prior(source: str | Path, ws: Workspace, name: str = "", adapt_to: tuple[int, int] | None = None
                 ) -> RunRecord:
    """Register a shipped prior folder (or a name under assets/priors/) as a prior run.

    The weights are checked by rebuilding the nets from prior.json and loading them; importing
    the same folder twice returns the existing run. `adapt_to` = (image size, channels) registers it adapted
    to targets of that shape (priors/adapt.py), as its own, labelled prior run.
    """
    src = Path(source)
    if not src.is_dir() and (ASSETS / str(source)).is_dir():
        src = ASSETS / str(source)
    missing = [f for f in FILES if not (src / f).is_file()]
    if missing:
        raise RunError(f"{src}: not a prior folder (missing {', '.join(missing)}); "
                       f"shipped priors: {', '.join(shipped_priors()) or 'none'}")
    try:
        info = json.loads((src / "prior.json").read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"{src}/prior.json is not a mivis prior description ({str(e)[:120]})") from None
    problem = check_prior_info(info)
    if problem:
        raise WeightsError(f"{src}/{problem}")
    ncfg = info["net"]
    G, D = build_nets(ncfg)
    load_into(G, src / "generator.safetensors")
    load_into(D, src / "discriminator.safetensors")
    import hashlib
    digest = hashlib.sha256((src / "generator.safetensors").read_bytes()).hexdigest()
    config = {"type": ncfg["type"], "imported": True, "sha256": digest, "data": info["data"], "net": ncfg,
              "target_run": None}
    adapt = None
    if adapt_to is not None:
        from .adapt import adapt_record
        adapt = adapt_record(ncfg, *adapt_to)
        if adapt is not None:
            config["adapt"] = adapt
    found = ws.find("prior", config)
    if found is not None:
        return found
    exported = info.get("exported_from", {})
    label = f"{ncfg['type']} prior ({src.name}" + (f"; adapted: {adapt['how']})" if adapt else ")")
    run = ws.create("prior", config, seed=exported.get("config", {}).get("params", {}).get("seed"),
                    data_fingerprint=info.get("data_fingerprint"), name=name or label)
    try:
        for f in FILES:
            if f == "prior.json" and adapt:
                run.write_json(f, {**info, "adapt": adapt})
                continue
            run.write_bytes(f, (src / f).read_bytes())
        if (src / "samples.png").exists():
            run.write_bytes("samples.png", (src / "samples.png").read_bytes())
        run.finish({**exported.get("metrics", {}), "imported_from": str(src)})
    except BaseException as e:
        run.fail(f"{type(e).__name__}: {e}")
        raise
    return run.record()
