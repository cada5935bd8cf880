"""A prior's ceiling, per judge: how much of the private identities the prior can express at all.

Each private TRAINING image is projected into the prior (the latent z whose image is closest in pixel MSE,
found by Adam from several random starts, the best image kept) and the projections are judged by the
evaluation model E (top-1 of the true identity) and by dlib (1-NN over the private training images) when it
is installed. An attack with this prior searches the same images, so a judge that names X% of the
projections bounds, roughly, what any attack with the prior can show that judge; the pages compare each
attack's top-1 with it ("this attack reached Y% of that").

This is a DIAGNOSTIC OF THE PRIOR that uses the private images (the attacker never has them): never an
attack, and it never enters an attack's loss or selection. The projection minimises pixel MSE, not
recognisability, so the ceiling is an estimate, not a proof: an attack steered by the target's identity
could in principle exceed it.

The projection is generic over "a differentiable function from z (N, z_dim) to images (N, C, H, W) in
[-1, 1]" (`project`): any prior whose loaded object has `G` (called as G(z) or, when `conditional`,
G(z, y) with the identity's label), `z_dim`, and optionally `z_bound` (|z| <= bound, None = unbounded).
Stored as a run of kind "ceiling" (parents: the prior and E): ceiling.json (settings, per-image rows,
metrics), projections.safetensors (x float16, y) and projections.png (per identity: real, projection, ...).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..attacks.base import per_sample_normal
from ..attacks.context import check_identities, check_prior
from ..checks import check_run_weights
from ..data import load_split
from ..device import resolve_device
from ..evaluation import dlib_judge
from ..evaluation.bootstrap import BOOTSTRAP_SEED, _ci, _resamples, bootstrap_mean, metric
from ..evaluation.judges import Judge
from ..evaluation.metrics import judge_reconstructions
from ..grid import grid_png
from ..params import Param, ParamError, ParamSet
from ..priors import store as prior_store  # by module: tests swap store.load_prior
from ..progress import NULL, Reporter
from ..runs import DamagedRun, RunRecord, Workspace
from ..train import load_classifier

METHOD_VERSION = 1
KIND = "ceiling"
DIAGNOSTIC = ("a diagnostic of the prior that uses the private training images (the attacker never has them); "
              "not an attack")
MAX_GRID_IDENTITIES = 50
GRID_PAIRS = 3  # (real, projection) pairs per identity in projections.png

CEILING_PARAMS = ParamSet([
    Param("starts", int, 2, "random starting latents per private image; the start whose image is closest in "
          "pixel MSE is kept", min=1, max=64),
    Param("steps", int, 200, "Adam steps per start (z minimising the pixel MSE to the private image)",
          min=1, max=100_000),
    Param("lr", float, 0.1, "Adam learning rate on z (0.1 reached a lower pixel MSE than 0.05 in 200 steps on the "
          "shipped 32 px prior)", min=1e-5, max=10.0),
    Param("clip", float, 0.0, "keep z in [-clip, clip] after every step (0 = the prior's own range: unbounded "
          "for the GAN priors; GMI's attack clips at 1)", min=0.0, max=100.0),
    Param("identities", "int_list", None, "private identities to project (comma-separated; empty = all)",
          optional=True),
    Param("per_identity", int, 0, "private training images projected per identity, the first ones "
          "(0 = all of them)", min=0, max=100_000),
    Param("seed", int, 0, "seed of the starting latents (one per image and start, independent of batching)",
          min=0, max=2**31 - 1),
    Param("device", str, "auto", "where to project and judge", choices=("auto", "cpu", "cuda")),
    Param("batch_size", int, 0, "images projected at once, all their starts together (0 = all on CPU, "
          "256 on CUDA)", min=0, max=1_000_000),
])


@dataclass
class CeilingPlan:
    """Everything validated, nothing computed."""
    params: dict
    prior: RunRecord
    eval: RunRecord | None      # None: dlib alone judges
    dlib: bool
    data: dict                  # the data split whose private training images are projected
    identities: list[int]


# --- the generic projection --------------------------------------------------------------------------
def start_latents(n: int, z_dim: int, starts: int, seed: int, first: int = 0) -> torch.Tensor:
    """(starts * n, z_dim) standard normal starts, start-major: row s * n + i is start s of image first + i.
    Each (image, start) has its own seed, so a batch's starts do not depend on the batch size."""
    img = torch.arange(first, first + n).repeat(starts)
    st = torch.arange(starts).repeat_interleave(n)
    return per_sample_normal((z_dim,), img, st, seed, salt="ceiling")


def project(generate: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, z0: torch.Tensor, steps: int,
            lr: float, bound: float | None = None, check: Callable[[int], None] | None = None):
    """Project images into a prior: z minimising mean pixel MSE(generate(z), x), by Adam from given starts.

    generate: a differentiable function from z (M, z_dim) to images (M, C, H, W); x: (N, C, H, W) images in
    [-1, 1]; z0: (S * N, z_dim) starts, start-major (row s * N + i starts image i). Each latent's loss is
    its own (summed over latents, Adam is per element), so latents do not interact. The image closest to
    its target over all starts and steps (the final one included) is kept. Returns (images (N, C, H, W),
    MSE per image (N,), index of the start that gave it (N,)), on x's device.
    """
    n = len(x)
    s = len(z0) // n
    if s * n != len(z0) or s < 1:
        raise ValueError(f"{len(z0)} starts for {n} images: not a whole number of starts per image")
    target = x.repeat(s, 1, 1, 1)
    z = z0.clone().to(x.device).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    best_mse = torch.full((s * n,), float("inf"), device=x.device)
    best_img = torch.zeros_like(target)
    for step in range(steps + 1):
        img = generate(z).float()
        if img.shape != target.shape:
            raise ValueError(f"the prior made images of shape {tuple(img.shape[1:])}, the data has "
                             f"{tuple(target.shape[1:])}")
        mse = (img - target).pow(2).flatten(1).mean(1)
        with torch.no_grad():
            better = mse < best_mse
            best_mse = torch.where(better, mse.detach(), best_mse)
            best_img[better] = img.detach()[better]
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        mse.sum().backward()
        opt.step()
        if bound:
            with torch.no_grad():
                z.clamp_(-bound, bound)
        if check is not None:
            check(step)
    per = best_mse.view(s, n)
    start = per.argmin(0)
    idx = start * n + torch.arange(n, device=x.device)
    return best_img[idx], per.min(0).values, start


def prior_generator(prior, y: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The prior as a function of z alone: a conditional prior gets the identity's label of every row
    (the latents are start-major, so the labels repeat once per start)."""
    if not getattr(prior, "conditional", False):
        return lambda z: prior.G(z)

    def gen(z: torch.Tensor) -> torch.Tensor:
        yy = y.to(z.device).repeat(len(z) // len(y))
        return prior.G(z, yy)
    return gen


def prior_bound(prior, clip: float) -> float | None:
    """The box |z| <= bound that projection keeps: the setting's clip, else what the prior declares."""
    if clip and clip > 0:
        return float(clip)
    b = getattr(prior, "z_bound", None)
    return float(b) if b else None


# --- planning ----------------------------------------------------------------------------------------
def _eval_fits(ws: Workspace, prior_id: str, rec: RunRecord) -> None:
    if rec.kind != "eval":
        raise ParamError(f"run {rec.id} is a {rec.kind} run; the ceiling is judged by an evaluation model "
                         "(a classifier trained on the private identities, --role eval) or by dlib alone (none)")
    if rec.status != "done":
        raise ParamError(f"evaluation run {rec.id} is {rec.status}; only finished classifiers can judge")
    check_prior(ws, prior_id, rec)  # resolution, channels, classes, and no private identity in its training


def pick_eval(ws: Workspace, prior_id: str) -> str | None:
    """The newest finished evaluation model that fits the prior (same image size and channels, none of its
    private identities among the prior's public ones), or None."""
    for rec in ws.list(kind="eval", status="done"):
        try:
            _eval_fits(ws, prior_id, rec)
            return rec.id
        except ParamError:
            continue
    return None


def plan_ceiling(ws: Workspace, prior_run: str, eval_run: str | None = None, params: dict | None = None,
                 dlib: bool | None = None) -> CeilingPlan:
    """Validate a ceiling measurement (ParamError names what is wrong); computes nothing.

    eval_run: an evaluation model, None = the newest that fits (dlib alone when none fits), "none" = dlib
    alone. dlib: None = when installed."""
    p = CEILING_PARAMS.validate(params, context="prior ceiling")
    resolve_device(p["device"])
    prior = prior_store.finished_prior(ws, prior_run, "have a ceiling")
    info = prior_store.prior_info(prior)
    if dlib is None:
        dlib = dlib_judge.available()
    elif dlib:
        dlib_judge.check_available()
    ev = None
    if eval_run is None:
        eval_run = pick_eval(ws, prior.id)
    if eval_run and str(eval_run).lower() != "none":
        ev = ws.get(eval_run)
        _eval_fits(ws, prior.id, ev)
    if ev is None and not dlib:
        raise ParamError(f"no judge for the ceiling of prior {prior.id}: no evaluation model fits it (train one "
                         f"on the same data with --role eval) and the dlib judge is not installed "
                         f"(`{dlib_judge.INSTALL}`)")
    data = ev.config["data"] if ev is not None else info["data"]
    split = load_split(data)
    c, h, _ = split.image_shape
    net = info["net"]
    if (net["img_size"], net["channels"]) != (h, c):
        raise ParamError(f"prior {prior.id} makes {net['img_size']} px images with {net['channels']} channel(s), "
                         f"the data {h} px with {c}")
    leaked = sorted(set(split.private_names) & set(info.get("public", [])))
    if leaked:
        raise ParamError(f"prior {prior.id} was trained on private identities ({', '.join(leaked[:5])}); "
                         "its ceiling would not be a ceiling")
    if net.get("conditional") and net["num_classes"] != split.num_classes:
        raise ParamError(f"conditional prior {prior.id} has {net['num_classes']} classes, the data "
                         f"{split.num_classes} private identities")
    ids = check_identities(p["identities"], split.num_classes)
    p["identities"] = ids
    return CeilingPlan(p, prior, ev, bool(dlib), split.config, ids)


# --- the run ------------------------------------------------------------------------------------------
def _images(split, ids: list[int], per_identity: int) -> tuple[torch.Tensor, torch.Tensor]:
    train = split.train
    rows = []
    ys = train.y
    for c in ids:
        idx = (ys == c).nonzero().flatten()
        rows.append(idx[:per_identity] if per_identity else idx)
    sel = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
    sub = train.take(sel)
    x = sub.x if isinstance(sub.x, torch.Tensor) else sub.x[0:len(sub)]
    return x.float(), sub.y.clone()


def ceiling_run(prior_run: str, eval_run: str | None = None, params: dict | None = None, *,
                workspace: Workspace | None = None, dlib: bool | None = None, reporter: Reporter = NULL,
                name: str = "", n_boot: int = 2000) -> RunRecord:
    """Measure a prior's ceiling and store it as a run of kind "ceiling" (see the module's docstring)."""
    ws = workspace or Workspace()
    plan = plan_ceiling(ws, prior_run, eval_run, params, dlib)
    for rid in (plan.prior.id, plan.eval.id if plan.eval else None):
        if rid:
            check_run_weights(ws, rid)  # unloadable weights: refused before the run exists
    p = plan.params
    split = load_split(plan.data)
    config = {"prior_run": plan.prior.id, "eval_run": plan.eval.id if plan.eval else None, "dlib": plan.dlib,
              "params": p, "data": split.config, "method_version": METHOD_VERSION, "diagnostic": DIAGNOSTIC}
    parents = [plan.prior.id] + ([plan.eval.id] if plan.eval else [])
    run = ws.create(KIND, config, parents=parents, seed=p["seed"], data_fingerprint=split.fingerprint,
                    name=name or f"ceiling of {plan.prior.name or plan.prior.id} (diagnostic)")
    try:
        device = resolve_device(p["device"])
        prior = prior_store.load_prior(ws, plan.prior.id, device)
        bound = prior_bound(prior, p["clip"])
        x_all, y_all = _images(split, plan.identities, p["per_identity"])
        n = len(x_all)
        bs = p["batch_size"] or (n if device.type != "cuda" else 256)
        out, mse, start = torch.empty_like(x_all), torch.empty(n), torch.empty(n, dtype=torch.long)
        t0 = time.monotonic()
        for b0 in range(0, n, bs):
            xb, yb = x_all[b0:b0 + bs].to(device), y_all[b0:b0 + bs]
            z0 = start_latents(len(xb), prior.z_dim, p["starts"], p["seed"], first=b0)
            if bound:
                z0 = z0.clamp(-bound, bound)

            def check(step: int, b0=b0, nb=len(xb)) -> None:
                reporter.check()
                reporter.report(phase="project", step=step + 1, steps=p["steps"], images=b0 + nb, total=n,
                                fraction=(b0 + nb * (step + 1) / p["steps"]) / n)
            img, m, s = project(prior_generator(prior, yb.to(device)), xb, z0.to(device), p["steps"], p["lr"],
                                bound, check)
            out[b0:b0 + len(xb)], mse[b0:b0 + len(xb)], start[b0:b0 + len(xb)] = img.cpu(), m.cpu(), s.cpu()
        seconds = time.monotonic() - t0
        reporter.report(force=True, phase="judge", fraction=1.0)
        t1 = time.monotonic()
        result = judge_projections(ws, plan, split, x_all, out, y_all, mse, device, n_boot, BOOTSTRAP_SEED)
        judge_seconds = time.monotonic() - t1
        rows = result.pop("rows")
        for r, s in zip(rows, start.tolist()):
            r["start"] = int(s)
        m = result["metrics"]
        m.update({"project_seconds": round(seconds, 2), "judge_seconds": round(judge_seconds, 2),
                  "device": str(device), "n_images": n, "n_identities": len(plan.identities),
                  "starts": p["starts"], "steps": p["steps"], "chance": 1.0 / split.num_classes})
        run.write_json("ceiling.json", {"format": "mivis-ceiling-1", "diagnostic": DIAGNOSTIC,
                                        "prior_run": plan.prior.id, "eval_run": config["eval_run"],
                                        "params": p, "judges": result["judges"], "metrics": m, "rows": rows,
                                        "interval": "95% percentile bootstrap over identities",
                                        "n_boot": n_boot, "bootstrap_seed": BOOTSTRAP_SEED})
        run.save_weights({"x": out.half(), "y": y_all, "mse": mse}, {"run": run.id, "kind": KIND},
                         name="projections.safetensors")
        run.write_bytes("projections.png", projection_grid(x_all, out, y_all))
        run.finish(m)
    except BaseException as e:
        run.fail_from(e)
        raise
    return run.record()


def judge_projections(ws: Workspace, plan: CeilingPlan, split, real: torch.Tensor, proj: torch.Tensor,
                      y: torch.Tensor, mse: torch.Tensor, device, n_boot: int, seed: int) -> dict:
    """Per image: E's and dlib's verdicts on the projection (and E's on the real image, its reference);
    summaries with 95% identity-bootstrap intervals."""
    groups = y.numpy()
    rows = [{"identity": int(c), "mse": float(v)} for c, v in zip(y.tolist(), mse.tolist())]
    metrics = {"pixel_mse": bootstrap_mean(mse.numpy(), groups, n_boot, seed)}
    judges = {}
    if plan.eval is not None:
        model, _ = load_classifier(ws, plan.eval.id, device)
        model.requires_grad_(False)
        j = Judge(f"{plan.eval.config['model']['arch']}:{plan.eval.id}", plan.eval, model,
                  next(model.parameters()).device, plan.eval.config.get("preprocess", "none"))
        v = judge_reconstructions(j, proj, y, split)
        real_pred = j.score(real)[0].argmax(1)
        for r, ok, pred, ok_real in zip(rows, v["top1"], v["pred"], (real_pred == y).numpy()):
            r.update({"eval_top1": bool(ok), "eval_pred": int(pred), "eval_top1_real": bool(ok_real)})
        metrics["ceiling_acc_top1"] = bootstrap_mean(v["top1"], groups, n_boot, seed)
        metrics["ceiling_acc_top5"] = bootstrap_mean(v["top5"], groups, n_boot, seed)
        metrics["originals_acc_top1"] = bootstrap_mean((real_pred == y).numpy(), groups, n_boot, seed)
        judges["E"] = {"run": plan.eval.id, "arch": plan.eval.config["model"]["arch"]}
    if plan.dlib:
        d = dlib_judge.dlib_verdicts(proj, y, split)
        for r, ok in zip(rows, d["top1"]):
            r["top1@dlib"] = bool(ok)
        metrics["ceiling_acc_top1_dlib"] = bootstrap_mean(d["top1"], groups, n_boot, seed)
        judges["dlib"] = d["info"]
    return {"metrics": metrics, "judges": judges, "rows": rows}


def projection_grid(real: torch.Tensor, proj: torch.Tensor, y: torch.Tensor) -> bytes:
    """One row per identity (at most MAX_GRID_IDENTITIES): real, projection, real, projection, ..."""
    ids = sorted(set(y.tolist()))[:MAX_GRID_IDENTITIES]
    blank = -torch.ones(real.shape[1:])
    cells = []
    for c in ids:
        idx = (y == c).nonzero().flatten()[:GRID_PAIRS].tolist()
        for i in idx:
            cells += [real[i], proj[i]]
        cells += [blank, blank] * (GRID_PAIRS - len(idx))
    return grid_png(torch.stack(cells), 2 * GRID_PAIRS, scale=2 if real.shape[-1] <= 32 else 1)


# --- reading a ceiling beside an attack -----------------------------------------------------------------
JUDGE_KEYS = {"E": ("eval_top1", "ceiling_acc_top1"), "dlib": ("top1@dlib", "ceiling_acc_top1_dlib")}
ATTACK_KEYS = {"E": "eval_top1", "dlib": "top1@dlib"}


def read_ceiling(rec: RunRecord) -> dict:
    """A ceiling run's ceiling.json, checked (DamagedRun naming the run and what is wrong)."""
    obj = rec.read_json("ceiling.json")
    rows = obj["rows"]
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("identity"), int)
                                             for r in rows):
        raise DamagedRun(rec.id, "ceiling.json has malformed per-image rows")
    return obj


def ceilings_of(ws: Workspace, prior_run: str | None, data_fingerprint: str | None = None) -> list[RunRecord]:
    """Finished ceiling runs of a prior (newest first), on one data split when a fingerprint is given."""
    if not prior_run:
        return []
    return [r for r in ws.list(kind=KIND, status="done") if r.config.get("prior_run") == prior_run
            and (data_fingerprint is None or r.data_fingerprint == data_fingerprint)]


def pick_ceiling(ws: Workspace, prior_run: str | None, data_fingerprint: str | None, judge: str,
                 eval_run: str | None = None) -> RunRecord | None:
    """The newest ceiling of this prior on this split that the judge scored: for E, judged by that very
    evaluation model; for dlib, any (dlib does not depend on E; one judged with E's run is preferred)."""
    found = [r for r in ceilings_of(ws, prior_run, data_fingerprint)
             if (judge == "dlib" and r.config.get("dlib")) or (judge == "E" and r.config.get("eval_run") == eval_run)]
    found.sort(key=lambda r: r.config.get("eval_run") != eval_run)  # stable: newest first within each group
    return found[0] if found else None


def versus_ceiling(ceiling_rows: list[dict], attack_rows: list[dict], judge: str, chance: float,
                   n_boot: int = 2000, seed: int = 0) -> dict:
    """An attack's top-1 beside its prior's ceiling, both over the attacked identities, with the share of the
    ceiling it reached (a ratio with a joint identity bootstrap). The ratio is left out, with the reason,
    when the ceiling's interval does not clear chance: a prior that shows the judge ~nothing leaves nothing
    to take a share of."""
    ckey, akey = JUDGE_KEYS[judge][0], ATTACK_KEYS[judge]
    arows = [r for r in attack_rows if akey in r]
    ids = sorted({int(r["identity"]) for r in arows})
    crow = [r for r in ceiling_rows if ckey in r and int(r["identity"]) in set(ids)]
    missing = sorted(set(ids) - {int(r["identity"]) for r in crow})
    out = {"judge": judge, "ceiling": None, "attack": None, "ratio": None, "identities": len(ids), "why": ""}
    if not arows or missing:
        out["why"] = (f"the ceiling does not cover identit{'y' if len(missing) == 1 else 'ies'} "
                      f"{', '.join(map(str, missing[:5]))}" if missing else f"the attack has no {judge} verdicts")
        return out
    cg = np.array([int(r["identity"]) for r in crow])
    ag = np.array([int(r["identity"]) for r in arows])
    cv = np.array([float(r[ckey]) for r in crow])
    av = np.array([float(r[akey]) for r in arows])
    x = bootstrap_mean(cv, cg, n_boot, seed)
    y = bootstrap_mean(av, ag, n_boot, seed)
    out.update(ceiling=x, attack=y)
    if x["lo"] is None or x["lo"] <= chance:
        out["why"] = (f"the ceiling's interval reaches chance ({100 * chance:.0f}%): this prior shows {judge} the "
                      "private identities barely or not at all, so no share of it is meaningful")
        return out
    index = {c: i for i, c in enumerate(ids)}
    ci, ai = np.array([index[c] for c in cg]), np.array([index[c] for c in ag])
    sc, nc = np.bincount(ci, cv, len(ids)), np.bincount(ci, minlength=len(ids)).astype(float)
    sa, na = np.bincount(ai, av, len(ids)), np.bincount(ai, minlength=len(ids)).astype(float)
    idx = _resamples(len(ids), n_boot, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = (sa[idx].sum(1) / na[idx].sum(1)) / (sc[idx].sum(1) / nc[idx].sum(1))
    out["ratio"] = metric(av.mean() / cv.mean(), *_ci(boot), len(ids))
    return out


def _pct(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "-"
    ci = f" [{100 * m['lo']:.0f}, {100 * m['hi']:.0f}]" if m.get("lo") is not None else ""
    return f"{100 * m['value']:.0f}%{ci}"


def metric_words(m: dict | None, pct: bool = True) -> str:
    """'32% [24, 41]' (pct) or '0.0182 [0.0171, 0.0195]' for a {"value", "lo", "hi"} metric."""
    if pct:
        return _pct(m)
    if not m or m.get("value") is None:
        return "-"
    ci = f" [{m['lo']:.3g}, {m['hi']:.3g}]" if m.get("lo") is not None else ""
    return f"{m['value']:.3g}{ci}"


def describe(v: dict, judge_words: str | None = None) -> str:
    """'This prior can show dlib at most 32% [24, 41]; this attack reached 25% [..] of that (8% [..]).'"""
    who = judge_words or v["judge"]
    if v["ceiling"] is None:
        return f"No ceiling under {who} to compare with: {v['why']}."
    head = f"This prior can show {who} at most {_pct(v['ceiling'])}"
    if v["ratio"] is None:
        return f"{head}; this attack reached {_pct(v['attack'])}. No share of the ceiling: {v['why']}."
    return f"{head}; this attack reached {_pct(v['ratio'])} of that ({_pct(v['attack'])} top-1)."


def settings_words(rec: RunRecord) -> str:
    """'2 starts x 200 Adam steps, 140 images, 58 s on cpu'."""
    m, p = rec.metrics, rec.config.get("params", {})
    return (f"{p.get('starts', '?')} starts x {p.get('steps', '?')} Adam steps, {m.get('n_images', '?')} private "
            f"training images, {m.get('project_seconds', 0):.0f} s on {m.get('device', '?')}")
