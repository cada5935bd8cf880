"""Training on a busy CPU: torch's default threads vs mivis's fitted threads, against a quiet baseline.

Trains the classroom target (ResNet-18, ORL 32 px) for a few epochs in a fresh process three times:
  quiet    no background load, torch's default threads (one per core), OpenMP's default waiting
  default  beside --load processes that each spin one core, torch's defaults as above
  mivis    beside the same load, with mivis's choice: threads fitted to the free cores (mivis.threads)
           and OpenMP threads that sleep while they wait (OMP_WAIT_POLICY=PASSIVE)
and prints each one's slowdown against the quiet run measured in the same invocation. A job that
degrades "in proportion" to the load slows by about (load + cores) / cores when it shares the cores
fairly with the spinning processes; the default's excess over that is what oversubscription costs.

  python benchmarks/busy_machine.py                 # 2 spinning processes, 3 epochs
  python benchmarks/busy_machine.py --load 4 --epochs 2

Writes JSON to benchmarks/results/. The background load of other programs at the start is recorded,
since a machine that is not otherwise quiet changes every number.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time, os
sys.path.insert(0, {root!r})
import torch
mode = {mode!r}
if mode == "mivis":
    from mivis.threads import fit_threads
    load = fit_threads()
    chosen = load.describe()
else:
    import mivis  # noqa: F401
    chosen = "torch default"
from mivis.train import Trainer, prepare_training
from mivis.runs import Workspace
import tempfile
ws = Workspace(tempfile.mkdtemp())
cfg, split, tr, te, mcfg, dfs, model, init = prepare_training(
    "target", {{"arch": "resnet18", "epochs": {epochs}, "seed": 0, "device": "cpu"}},
    {{"dataset": "orl", "image_size": 32}}, None, None, ws)
t0 = time.perf_counter()
Trainer(model, tr, cfg, dfs, te).fit()
print(json.dumps({{"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads(), "chosen": chosen,
                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}}))
"""


def spin(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


@contextlib.contextmanager
def spinning(load: int):
    """`load` background processes, each spinning one core, for the duration of the block."""
    stop = time.time() + 3600
    procs = [mp.get_context("spawn").Process(target=spin, args=(stop,), daemon=True) for _ in range(load)]
    for p in procs:
        p.start()
    if procs:
        time.sleep(1.0)  # let them start before anything is measured
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
            p.join()


def run_child(mode: str, epochs: int, load: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MIVIS_THREADS", "OMP_WAIT_POLICY")}
    if mode != "mivis":
        env["OMP_WAIT_POLICY"] = "ACTIVE"  # libgomp's default behaviour when unset: spin before sleeping
    with spinning(load):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), mode=mode, epochs=epochs)],
                             env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall_seconds"] = wall
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--load", type=int, default=2, help="background processes, each spinning one core")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    from mivis.threads import measure_load, usable_cores
    before = measure_load(1.0)
    cores = usable_cores()
    rows = {}
    for mode, load in (("quiet", 0), ("default", a.load), ("mivis", a.load)):
        rows[mode] = run_child(mode, a.epochs, load)
        print(f"{mode:8s} load={load}  {rows[mode]['seconds']:7.1f} s  threads={rows[mode]['threads']}  "
              f"({rows[mode]['chosen']})", flush=True)
    q = rows["quiet"]["seconds"]
    fair = (a.load + cores) / cores
    print(f"\nslowdown vs quiet ({q:.1f} s): default threads {rows['default']['seconds'] / q:.2f}x, "
          f"mivis {rows['mivis']['seconds'] / q:.2f}x; a fair share of {cores} cores beside {a.load} spinning "
          f"processes is {fair:.2f}x")
    print(f"mivis vs default under load: {rows['default']['seconds'] / rows['mivis']['seconds']:.2f}x faster")
    print(f"other programs' load at the start: {before.others_busy:.2f} core(s) of {cores}")
    out = {"benchmark": "busy_machine", "epochs": a.epochs, "load_processes": a.load, "cores": cores,
           "other_load_at_start_cores": round(before.others_busy, 2), "machine": platform.platform(),
           "processor": platform.processor(), "python": platform.python_version(), "rows": rows,
           "slowdown_default": rows["default"]["seconds"] / q, "slowdown_mivis": rows["mivis"]["seconds"] / q,
           "fair_share_slowdown": fair}
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    path = res / f"busy_machine-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
