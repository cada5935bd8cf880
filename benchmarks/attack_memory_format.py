"""The classroom GMI attack's step in NCHW vs channels_last memory format, same process, same work.

The shipped classroom target (ResNet-18, ORL 32 px) and the shipped GMI prior, all 20 private identities
x 5 restarts (100 latents in one batch), `--iterations` steps, alternating the two formats for `--rounds`
rounds so that a change in the machine's load hits both. Baseline: NCHW (what mivis used on CPU before).
Prints the median seconds per step of each and the ratio.

  python benchmarks/attack_memory_format.py            # 2 threads, 3 rounds x 30 steps each

Writes JSON to benchmarks/results/ with the machine and the other programs' load at the start.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import cpu_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch
    from mivis.attacks.context import pick_prior
    from mivis.attacks.invert import invert
    from mivis.classroom import import_classroom
    from mivis.runs import Workspace
    from mivis.threads import measure_load
    torch.set_num_threads(a.threads)
    load = measure_load()
    ws = Workspace(tempfile.mkdtemp(prefix="mivis-memfmt-"))
    ids = import_classroom(ws)
    prior = pick_prior(ws, ws.get(ids["target"]), "unconditional")  # the shipped GMI prior
    per_step: dict[str, list[float]] = {"nchw": [], "channels_last": []}
    for r in range(a.rounds):
        order = ["nchw", "channels_last"] if r % 2 == 0 else ["channels_last", "nchw"]
        for fmt in order:
            res = invert("gmi", ids["target"], prior, restarts=5,
                         params={"iterations": a.iterations, "channels_last": fmt == "channels_last"}, workspace=ws)
            per_step[fmt].append(res.seconds / a.iterations)
            print(f"round {r + 1} {fmt}: {res.seconds / a.iterations:.3f} s a step ({len(res.y)} latents)")
    med = {k: statistics.median(v) for k, v in per_step.items()}
    ratio = med["nchw"] / med["channels_last"]
    print(f"median s a step: NCHW {med['nchw']:.3f}, channels_last {med['channels_last']:.3f}; "
          f"channels_last is {ratio:.2f}x the speed of NCHW")
    out = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": cpu_model(), "threads": a.threads,
           "torch": torch.__version__, "machine": platform.platform(), "iterations": a.iterations,
           "latents": 100, "other_load_at_start_cores": round(load.others_busy, 2),
           "seconds_per_step": per_step, "median": med, "speedup_channels_last": round(ratio, 3)}
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(exist_ok=True)
    path = res_dir / f"attack_memory_format-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
