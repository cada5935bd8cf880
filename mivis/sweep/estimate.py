"""Up-front run-time estimates for pending sweep steps, from a few timed steps on this device.

Nothing is trained: models are built at random initialisation with the step's real shapes and
timed for a few forward/backward passes; the time per pass is multiplied by the passes the step
will make. Only pending steps count (finished ones are reused).
"""
from __future__ import annotations

import time
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..attacks.posterior import SCORE_BATCH
from ..data import load_split
from ..device import resolve_device, to_device


def _time(fn, reps: int = 2) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


@lru_cache(maxsize=64)
def _train_step_seconds(arch: str, shape: tuple, batch: int, classes: int, device: str) -> float:
    from ..models import build_classifier
    dev = resolve_device(device)
    m = build_classifier(arch, classes, shape[0], shape[1]).to(dev).train()
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    x = to_device(torch.randn(batch, *shape), dev)
    y = torch.randint(0, classes, (batch,), device=dev)

    def step():
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    return _time(step)


def _scoring_nets(arch: str, shape: tuple, classes: int, dev):
    from ..models import build_classifier
    from ..priors.base import build_nets, net_config, PRIORS
    T = build_classifier(arch, classes, shape[0], shape[1]).to(dev).eval()
    G, D = build_nets(net_config("gmi", PRIORS.get("gmi").params.defaults(), shape[1], shape[0], 0))
    return T, G.to(dev).eval(), D.to(dev).eval()


@lru_cache(maxsize=64)
def _sample_step_seconds(arch: str, shape: tuple, n: int, classes: int, device: str) -> float:
    """One round of a gradient-free attack: n prior samples generated and scored by the target, as the attack
    does it, SCORE_BATCH at a time (one part timed and scaled)."""
    dev = resolve_device(device)
    T, G, _ = _scoring_nets(arch, shape, classes, dev)
    part = min(n, SCORE_BATCH)
    z = torch.randn(part, G.z_dim if hasattr(G, "z_dim") else 100, device=dev)

    def step():
        with torch.no_grad():
            T(G(z))
    return _time(step) * n / part


@lru_cache(maxsize=64)
def _attack_step_seconds(arch: str, shape: tuple, n: int, classes: int, device: str) -> float:
    dev = resolve_device(device)
    T, G, D = _scoring_nets(arch, shape, classes, dev)
    z = torch.randn(n, G.z_dim if hasattr(G, "z_dim") else 100, device=dev, requires_grad=True)
    y = torch.randint(0, classes, (n,), device=dev)

    def step():
        x = G(z)
        loss = -D(x).mean() + F.cross_entropy(T(x), y)
        torch.autograd.grad(loss, z)
    return _time(step)


def estimate_step(step, steps: dict, device: str = "auto") -> float:
    """Seconds for one pending step (0 for imported priors and for a target the grid names as an existing
    run); `steps` maps keys to steps."""
    s = step.spec
    if step.kind == "existing":
        return 0.0  # a run the grid names: nothing to train
    target = steps.get(s.get("target")) if step.kind in ("attack", "layers") else None
    trial_data = (target.spec.get("data", target.meta.get("data")) or {}) if target else {}
    dev = "cuda" if (device == "auto" and torch.cuda.is_available()) else ("cpu" if device == "auto" else device)
    split = load_split(s.get("data", trial_data))
    shape = tuple(split.image_shape)
    if step.kind == "train":
        from ..train import TRAIN_PARAMS
        cfg = TRAIN_PARAMS.validate(s["train"])
        n = len(split.public) if s["role"] == "public" else len(split.train)
        classes = len(split.public_names) if s["role"] == "public" else split.num_classes
        bs = min(cfg["batch_size"], n)
        extra = sum(int(p.get("adapt_epochs", 5)) for k, p in (s.get("defenses") or {}).items() if k == "calor")
        return _train_step_seconds(cfg["arch"], shape, bs, classes, dev) * max(1, n // bs) * (cfg["epochs"] + extra)
    if step.kind == "prior":
        if s.get("shipped"):
            return 0.0
        from ..priors import PRESETS, PRIORS
        p = PRIORS.get(s["type"]).params.validate({**PRESETS.get(s["preset"] or "", {}), **s["params"]})
        # one GAN iteration ~ a D step and a G step on the batch: about 3 attack-like passes
        return 3 * _attack_step_seconds("resnet18", shape, p["batch_size"], 2, dev) * p["iterations"] / 4
    if step.kind in ("attack", "layers"):
        from ..attacks import ATTACKS
        attack = step if step.kind == "attack" else steps[s["attack"]]
        entry = ATTACKS.get(attack.spec["name"])
        p = entry.params.validate(attack.spec["params"])
        n = len(p["identities"] or range(split.num_classes)) * p["restarts"]
        arch = (target.spec.get("train") or target.meta).get("arch") or "resnet18"
        if entry.obj.gradient_free:  # the posterior mean: forward passes over its pools
            per = _sample_step_seconds(arch, shape, p["samples_per_step"], split.num_classes, dev)
            return per * p["restarts"] * p["iterations"]
        per = _attack_step_seconds(arch, shape, n, split.num_classes, dev)
        # a layers analysis replays the attack and adds per-sample Fisher passes
        return per * p["iterations"] * (1.0 if step.kind == "attack" else 1.5)
    return 0.0
