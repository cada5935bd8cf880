"""The posterior-mean attack (the average of the prior samples the target rates highest) against IF-GMI.

    python scripts/measure_posterior_mean.py --workspace WS [--seeds 1,2,3] [--params JSON]
                                             [--out docs/measurements/posterior_mean.json]

Why: the gradient attacks land on one of the many faces the target is certain of, and dlib names few of
them (docs/measurements/leak.md). `pmean` (mivis/attacks/posterior.py) averages, per identity, the
`top_k` samples of the shipped 32 px GMI prior with the highest log p_T(c|x) out of a pool of
iterations x samples_per_step: no gradient, the target's output probabilities only; dlib and the private
images only judge the result. Both attacks run through `attack_run` (what the app and the CLI run) on the
shipped classroom target with the same seeds; IF-GMI with the classroom preset (the one-click attack).
Prints and writes top-1 under E and dlib (95% bootstrap over identities, an identity's reconstructions of
every seed kept together), dlib's mean rank of the true identity among the 20 (chance 10.5; finer than
top-1), and the paired differences over identities.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import cpu_model  # noqa: E402
from measure_leak import classroom_setup, finish, paired, paired_words, per_reconstruction, pooled  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULTS = {"restarts": 1, "iterations": 50, "samples_per_step": 2000, "top_k": 100}


def dlib_closeness(x: torch.Tensor, split) -> torch.Tensor:
    """(N, classes): minus the squared embedding distance to each identity's nearest private training image."""
    from mivis.evaluation import dlib_judge
    ref, ref_y = dlib_judge.gallery(split), split.train.y.numpy()
    d = ((dlib_judge.embed(x)[:, None, :] - ref[None]) ** 2).sum(-1)
    return -torch.from_numpy(np.stack([d[:, ref_y == c].min(1) for c in range(split.num_classes)], 1))


def dlib_ranks(x: torch.Tensor, y: torch.Tensor, split) -> np.ndarray:
    """Rank of the true identity among all private identities by dlib distance (1 = named)."""
    near = dlib_closeness(x, split).numpy()
    yy = y.numpy()
    return (near > near[np.arange(len(yy)), yy][:, None]).sum(1) + 1


def with_ranks(rows: list[dict], ranks: np.ndarray, y: torch.Tensor) -> list[dict]:
    """Each judged row with dlib's rank of its identity (rows and images in the same order)."""
    if [row["identity"] for row in rows] != y.tolist():
        raise SystemExit("the evaluation's rows and the reconstructions are not in the same order")
    return [{**row, "dlib_rank": int(k)} for row, k in zip(rows, ranks)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--params", default="{}", help=f"pmean parameters over {DEFAULTS}, as JSON")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    from mivis.attacks import attack_run
    from mivis.attacks.presets import apply_preset
    from mivis.runs import Workspace
    ws = Workspace(a.workspace)
    runs, prior_id, split = classroom_setup(ws)
    params = {**DEFAULTS, **json.loads(a.params)}
    rows = {"posterior mean": [], "IF-GMI": []}
    per_seed = []
    for s in [int(v) for v in a.seeds.split(",")]:
        pm = attack_run("pmean", runs["target"], prior_id, params={**params, "seed": s}, eval_run=runs["eval"],
                        dlib=True, workspace=ws, name=f"pmean seed {s}")
        ifgmi = attack_run("ifgmi", runs["target"], prior_id, params=apply_preset("classroom", "ifgmi", {"seed": s}),
                           eval_run=runs["eval"], dlib=True, workspace=ws, name=f"ifgmi classroom seed {s}")
        for name, rec in (("posterior mean", pm), ("IF-GMI", ifgmi)):
            rx = rec.read_tensors("reconstructions.safetensors", ("x", "y"))
            rows[name] += with_ranks(per_reconstruction(rec), dlib_ranks(rx["x"].float(), rx["y"], split), rx["y"])
        seconds = {n: r.metrics["attack_seconds"] for n, r in (("pmean", pm), ("ifgmi", ifgmi))}
        per_seed.append({"seed": s, "pmean_run": pm.id, "ifgmi_run": ifgmi.id, "attack_seconds": seconds})
        print(f"seed {s}: pmean {pm.id} {seconds['pmean']:.0f} s, IF-GMI {ifgmi.id} {seconds['ifgmi']:.0f} s",
              flush=True)
    result = {"machine": f"{cpu_model()}, {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seeds": a.seeds, "pmean_params": params,
              "prior": "orl32-gmi", "per_seed": per_seed, "methods": {}}
    for name, r in rows.items():
        rk = np.array([row["dlib_rank"] for row in r], dtype=float)
        result["methods"][name] = {"E": pooled(r, "eval_top1"), "dlib": pooled(r, "top1@dlib"), "n": len(r),
                                   "dlib_mean_rank": round(float(rk.mean()), 2),
                                   "dlib_top3": round(float((rk <= 3).mean()), 3)}
        e, d = result["methods"][name]["E"], result["methods"][name]["dlib"]
        print(f"{name}: E {e['value']:.1%} [{e['lo']:.1%}, {e['hi']:.1%}], dlib {d['value']:.1%} "
              f"[{d['lo']:.1%}, {d['hi']:.1%}], dlib mean rank {rk.mean():.2f} of {split.num_classes}, "
              f"top-3 {(rk <= 3).mean():.1%} ({len(r)} images)")
    v = {"E": paired(rows["posterior mean"], rows["IF-GMI"], "eval_top1"),
         "dlib": paired(rows["posterior mean"], rows["IF-GMI"], "top1@dlib"),
         "dlib_mean_rank": paired(rows["posterior mean"], rows["IF-GMI"], "dlib_rank")}
    result["posterior mean - IF-GMI"] = v
    print(paired_words("posterior mean - IF-GMI", v))
    r = v["dlib_mean_rank"]
    print(f"  dlib mean rank, paired: {r['value']:+.2f} [{r['lo']:+.2f}, {r['hi']:+.2f}] (negative: closer to the person)")
    return finish(result, a.out)


if __name__ == "__main__":
    sys.exit(main())
