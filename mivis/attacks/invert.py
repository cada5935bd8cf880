"""The single entry point of every attack: `invert(...)`, plus validation and a run-time estimate.

invert(attack, target_run, prior_run, identities, restarts, params, reporter=..., on_step=...)
validates everything (refusals before compute), loads the target and prior, optimises all
identities x restarts in one batched run and returns the reconstructions with their trace.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..device import autocast, timed
from ..params import ParamError
from ..progress import NULL, Reporter
from ..runs import RunRecord, Workspace
from .base import ATTACKS, Attack, check_prior_kind
from .context import build_context, check_identities, check_prior, check_target
from .engine import Engine, StepEvent, Trace
from .losses import target_likelihood


@dataclass
class AttackPlan:
    """Everything validated, nothing computed yet."""
    attack: str
    params: dict
    target: RunRecord
    prior: RunRecord | None
    identities: list[int]


@dataclass
class InversionResult:
    attack: str
    params: dict
    identities: list[int]
    x: torch.Tensor               # (M, C, H, W) reconstructions in [-1, 1], CPU
    y: torch.Tensor               # (M,) attacked class of each reconstruction
    restart: torch.Tensor         # (M,) restart (candidate) index
    p_target: torch.Tensor        # (M,) p_T(y | x*) on the final images
    target_pred: torch.Tensor     # (M,) target's top-1 class on the final images
    trace: Trace
    seconds: float
    device: str
    batch_size: int
    chunks: int
    events: list[str] = field(default_factory=list)
    target_logit: torch.Tensor | None = None  # (M,) the target's raw logit of y (GMI's best-restart score)


def plan_attack(attack: str, target_run: str, prior_run: str | None, identities: list[int] | None = None,
                restarts: int | None = None, params: dict | None = None, *, workspace: Workspace) -> AttackPlan:
    """Validate an attack: parameters, target, prior and identities. Raises ParamError; computes nothing."""
    entry = ATTACKS.get(attack)
    given = dict(params or {})
    if identities is not None:
        given["identities"] = list(identities)
    if restarts is not None:
        given["restarts"] = restarts
    target = check_target(workspace, target_run)
    n_classes = target.config["model"]["num_classes"]
    if isinstance(given.get("identities"), str) and "identities" in entry.params:
        # text from the CLI or a URL: a range ("0-299") is bounded by the target's classes before it expands
        import dataclasses
        bounded = dataclasses.replace(entry.params["identities"], min=0, max=n_classes - 1)
        try:
            given["identities"] = bounded.coerce(given["identities"])
        except ParamError:
            import re
            if not re.fullmatch(r"\s*-?\d+(-\d+)?(\s*,\s*-?\d+(-\d+)?)*\s*,?\s*", given["identities"]):
                raise  # not integers and ranges at all: the parameter's own message
            raise ParamError(f"identities {given['identities'][:40]!r} go outside the target's classes; "
                             f"allowed: 0..{n_classes - 1}") from None
    p = entry.params.validate(given, context=f"attack {attack}")
    from ..device import resolve_device
    resolve_device(p["device"])
    ids = check_identities(p["identities"], n_classes)
    p["identities"] = ids
    need = entry.meta["prior"]
    if need == "none" and prior_run:
        raise ParamError(f"attack {attack} optimises pixels and uses no prior; leave the prior empty")
    if need != "none" and not prior_run:
        kind = "a plgmi (conditional)" if need == "conditional" else "a gmi or kedmi"
        raise ParamError(f"attack {attack} needs {kind} prior run")
    prior = check_prior(workspace, prior_run, target) if prior_run else None
    if prior is not None:
        conditional = prior.config["net"]["conditional"]
        if need == "conditional" and not conditional:
            raise ParamError(f"attack {attack} needs a conditional (plgmi) prior; prior {prior.id} is a "
                             f"{prior.config['type']} prior")
        if need == "unconditional" and conditional:
            raise ParamError(f"attack {attack} needs an unconditional (gmi or kedmi) prior; prior {prior.id} "
                             "is conditional (plgmi)")
    return AttackPlan(attack, p, target, prior, ids)


def build_attack(plan: AttackPlan, workspace: Workspace, reporter: Reporter = NULL) -> Attack:
    ctx = build_context(workspace, plan.target, plan.prior, plan.params["device"], reporter)
    set_memory_format(ctx, torch.channels_last if plan.params["channels_last"] else torch.contiguous_format)
    cls = ATTACKS.get(plan.attack).obj
    check_prior_kind(cls, ctx.prior)
    attack = cls(plan.params, ctx)
    if hasattr(attack, "prepare"):
        attack.prepare()
    return attack


def set_memory_format(ctx, fmt) -> None:
    mods = [ctx.target] + ([ctx.prior.G, ctx.prior.D] if ctx.prior is not None else [])
    for m in mods:
        m.to(memory_format=fmt)


def _layout(attack: Attack, ids: list[int], restarts: int):
    per = attack.candidates_per_identity(restarts)
    y = torch.tensor(ids, dtype=torch.long).repeat_interleave(per)
    r = torch.arange(per).repeat(len(ids))
    return y, r, per


def choose_batch(attack: Attack, engine: Engine, y_all, r_all, per: int, requested: int) -> int:
    """Latents per chunk: as requested; all of them on CPU; from free memory on CUDA (a quiet two-step
    probe: no hook, no progress); never more than the attack's own cap (max_chunk)."""
    cap = attack.max_chunk() or len(y_all)
    return max(per, min(cap, _batch(attack, engine, y_all, r_all, per, requested)))


def _batch(attack: Attack, engine: Engine, y_all, r_all, per: int, requested: int) -> int:
    n = len(y_all)
    if requested > 0:
        return max(per, min(requested, n))
    dev = attack.ctx.device
    if dev.type != "cuda":
        return n
    k = max(1, min(n // per, 64 // per or 1))
    idx = torch.arange(k * per)
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    with engine.quiet():
        engine.run_chunk(y_all[idx], r_all[idx], 2, keep=per)
    torch.cuda.synchronize(dev)
    per_latent = max(1, (torch.cuda.max_memory_allocated(dev) - base) / len(idx))
    free, _ = torch.cuda.mem_get_info(dev)
    return max(per, min(n, int(0.6 * free / per_latent)))


def invert(attack: str, target_run: str, prior_run: str | None = None, identities: list[int] | None = None,
           restarts: int | None = None, params: dict | None = None, *, workspace: Workspace | None = None,
           reporter: Reporter = NULL, on_step: Callable[[StepEvent], None] | None = None, hook_every: int = 1,
           plan: AttackPlan | None = None) -> InversionResult:
    """Run one attack: all identities x restarts in one batched optimisation.

    on_step(event) is called every `hook_every` iterations (see engine.StepEvent).
    """
    ws = workspace or Workspace()
    plan = plan or plan_attack(attack, target_run, prior_run, identities, restarts, params, workspace=ws)
    p = plan.params
    a = build_attack(plan, ws, reporter)
    y_all, r_all, per = _layout(a, plan.identities, p["restarts"])
    eng = Engine(a, p["iterations"], seed=p["seed"], amp=p["amp"], compile_mode=p["compile"], reporter=reporter,
                 on_step=on_step, hook_every=hook_every)
    batch = choose_batch(a, eng, y_all, r_all, per, p["batch_size"])
    out = eng.run(y_all, r_all, per, p["restarts"], batch)
    y, r = y_all[out.source], restart_numbers(r_all, out.source)
    p_t, pred, logit = target_scores(a.T, out.x, y, a.ctx.device)
    return InversionResult(plan.attack, p, plan.identities, out.x, y, r, p_t, pred, out.trace, out.seconds,
                           str(a.ctx.device), out.batch_size, out.chunks, eng.events, logit)


def restart_numbers(r_all: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Restart index of each reconstruction: its latent's, or, when several reconstructions are drawn from
    one latent (KEDMI's Gaussian per identity), latent restart * draws + the draw's number."""
    counts = torch.bincount(source, minlength=len(r_all)) if len(source) else torch.zeros(0, dtype=torch.long)
    draws = int(counts.max()) if len(counts) else 1
    if draws <= 1:
        return r_all[source]
    occ, seen = torch.empty_like(source), {}
    for i, s in enumerate(source.tolist()):
        occ[i] = seen.get(s, 0)
        seen[s] = int(occ[i]) + 1
    return r_all[source] * draws + occ


@torch.no_grad()
def target_scores(T, x: torch.Tensor, y: torch.Tensor, device, batch: int = 512):
    """(p_T(y|x), the target's top-1 class, its raw logit of y) per reconstruction."""
    ps, preds, logits = [], [], []
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch].to(device), y[i:i + batch].to(device)
        with autocast(device):
            lg = T(xb).float()
        ps.append(target_likelihood(lg, yb).cpu())
        preds.append(lg.argmax(1).cpu())
        logits.append(lg.gather(1, yb[:, None]).squeeze(1).cpu())
    return torch.cat(ps), torch.cat(preds), torch.cat(logits)


def estimate_seconds(attack: str, target_run: str, prior_run: str | None = None, identities: list[int] | None = None,
                     restarts: int | None = None, params: dict | None = None, *, workspace: Workspace | None = None,
                     steps: int = 5) -> float:
    """Seconds the optimisation of this attack will take, from a few timed steps on the real batch.

    Excludes one-off costs: loading, torch.compile warm-up and LOMMA's student distillation when the
    students are not yet in the workspace.
    """
    ws = workspace or Workspace()
    plan = plan_attack(attack, target_run, prior_run, identities, restarts, params, workspace=ws)
    p = plan.params
    a = build_attack(plan, ws)
    y_all, r_all, per = _layout(a, plan.identities, p["restarts"])
    if a.gradient_free:
        chunk = choose_batch(a, None, y_all, r_all, per, p["batch_size"] or len(y_all))  # no probe: the cap only
        ids = max(1, chunk // per)
        return -(-len(y_all) // (ids * per)) * sampling_seconds(a, y_all[:ids * per], r_all[:ids * per])
    eng = Engine(a, steps, seed=p["seed"], amp=p["amp"], compile_mode=p["compile"])
    batch = choose_batch(a, eng, y_all, r_all, per, p["batch_size"])
    ids_per_chunk = max(1, batch // per)
    idx = torch.arange(min(len(y_all), ids_per_chunk * per))
    eng.run_chunk(y_all[idx], r_all[idx], 2, keep=p["restarts"])  # warm-up
    if a.ctx.device.type == "cuda":
        torch.cuda.synchronize(a.ctx.device)
    t0 = time.monotonic()
    eng.run_chunk(y_all[idx], r_all[idx], steps + 1, keep=p["restarts"])
    if a.ctx.device.type == "cuda":
        torch.cuda.synchronize(a.ctx.device)
    t1 = time.monotonic()
    eng.run_chunk(y_all[idx], r_all[idx], 1, keep=p["restarts"])
    if a.ctx.device.type == "cuda":
        torch.cuda.synchronize(a.ctx.device)
    overhead = time.monotonic() - t1  # init + finalize + one step
    per_step = max(1e-9, (t1 - t0 - overhead) / steps) if t1 - t0 > overhead else (t1 - t0) / (steps + 1)
    chunks = -(-len(y_all) // len(idx))
    return chunks * (per_step * p["iterations"] + overhead)


def sampling_seconds(a: Attack, y: torch.Tensor, r: torch.Tensor, probe: int = 256) -> float:
    """Seconds of one chunk (y, r) of a gradient-free attack (the posterior mean): a round's cost grows with
    its samples, so two rounds of at most `probe` samples are timed (after one warm-up round) and scaled to
    the run's pool, plus the final averaging timed as it will run. Costs a few probe rounds, not a share of
    the pool."""
    p, dev = dict(a.p), a.ctx.device
    n = min(probe, p["samples_per_step"])
    a.p = {**p, "samples_per_step": n}  # this throwaway attack object draws probe-sized rounds
    y = y.to(dev)
    with autocast(dev, p["amp"]):
        state = a.init(y, r, p["seed"])
        a.sample_step(state, y)  # warm-up
        per_round = timed(lambda: (a.sample_step(state, y), a.sample_step(state, y)), dev) / 2
        final = timed(lambda: a.finalize(state, y, r, p["seed"], len(y)), dev)
    kept = max(1, len(state["score"]))  # the final averaging scales with the kept samples (top_k when full)
    return per_round * p["samples_per_step"] / n * p["iterations"] + final * p["top_k"] / kept
