"""How much do the independent judges see? One-click attacks on the classroom target, several attack seeds.

    python scripts/measure_leak.py --workspace WS [--seeds 1,2,3] [--attacks ifgmi,gmi] [--out docs/measurements/leak.json]

Registers the shipped classroom target and judge (`classroom setup`, no training) and the shipped 32 px GMI
prior, then runs each attack with the `classroom` preset (what the Attack page launches in one click) once
per seed, each run judged by the evaluation model E and by dlib, as every attack run is. Prints and writes,
per attack, top-1 under E and under dlib pooled over the seeds (95% bootstrap over identities: an identity's
reconstructions of every seed stay together), each seed's values, the attack's optimisation seconds, and
the paired difference between the attacks over the same identities. The judges never enter an attack: dlib
and the private images are used only here, after the attack.
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
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import cpu_model  # noqa: E402  (results name their machine, as the benchmarks' do)


def per_reconstruction(rec) -> list[dict]:
    return rec.read_json("evaluation.json")["per_reconstruction"]


def pooled(rows: list[dict], key: str, n_boot: int = 2000) -> dict:
    import numpy as np
    from mivis.evaluation.bootstrap import bootstrap_mean
    return bootstrap_mean(np.array([float(r[key]) for r in rows]), np.array([r["identity"] for r in rows]), n_boot)


def paired(a: list[dict], b: list[dict], key: str) -> dict:
    import numpy as np
    from mivis.evaluation.bootstrap import paired_difference
    return paired_difference(np.array([float(r[key]) for r in a]), np.array([r["identity"] for r in a]),
                             np.array([float(r[key]) for r in b]), np.array([r["identity"] for r in b]))


def paired_words(label: str, v: dict) -> str:
    """One line: a paired difference under E and under dlib with their intervals."""
    return (f"{label}: E {v['E']['value']:+.1%} [{v['E']['lo']:+.1%}, {v['E']['hi']:+.1%}], dlib "
            f"{v['dlib']['value']:+.1%} [{v['dlib']['lo']:+.1%}, {v['dlib']['hi']:+.1%}]")


def finish(result: dict, out: str) -> int:
    print(f"machine: {result['machine']}")
    if out:
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def classroom_setup(ws):
    """The shipped classroom target and judge (registered, no training), the shipped 32 px GMI prior's run id
    and the target's data split: what every measurement on the classroom target starts from."""
    from mivis.classroom import import_classroom
    from mivis.data import load_split
    from mivis.priors import import_prior
    runs = import_classroom(ws)
    return runs, import_prior("orl32-gmi", ws).id, load_split(ws.get(runs["target"]).config["data"])


def mean_per_identity(rec):
    """(identities attacked, sorted; each one's average reconstruction of one run: the restarts' consensus image)."""
    import torch
    t = rec.read_tensors("reconstructions.safetensors", ("x", "y"))
    x, y = t["x"].float(), t["y"]
    ids = y.unique()
    return ids, torch.stack([x[y == c].mean(0) for c in ids])


def mean_image_verdicts(rec, split) -> list[dict]:
    """dlib's verdict on each identity's average reconstruction of one run."""
    from mivis.evaluation.dlib_judge import dlib_verdicts
    ids, mean = mean_per_identity(rec)
    v = dlib_verdicts(mean, ids, split)["top1"]
    return [{"identity": int(c), "top1@dlib": bool(b)} for c, b in zip(ids.tolist(), v.tolist())]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--attacks", default="ifgmi,gmi")
    ap.add_argument("--preset", default="classroom")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    from mivis.attacks import attack_run
    from mivis.classroom import import_classroom
    from mivis.priors import import_prior
    from mivis.runs import Workspace
    from mivis.attacks.presets import apply_preset
    ws = Workspace(a.workspace)
    runs = import_classroom(ws)
    prior = import_prior("orl32-gmi", ws).id
    seeds = [int(s) for s in a.seeds.split(",")]
    result = {"machine": f"{cpu_model()}, {os.cpu_count()} cores", "preset": a.preset,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "target": "classroom ResNet-18 (shipped)",
              "seeds": seeds, "attacks": {}}
    from mivis.data import load_split
    split = load_split(ws.get(runs["target"]).config["data"])
    rows = {}
    for name in a.attacks.split(","):
        per_seed, all_rows, mean_rows = [], [], []
        for s in seeds:
            params = apply_preset(a.preset, name, {"seed": s})
            t0 = time.monotonic()
            rec = attack_run(name, runs["target"], prior, params=params, eval_run=runs["eval"], dlib=True,
                             workspace=ws, name=f"{name} {a.preset} seed {s}")
            wall = time.monotonic() - t0
            rs = per_reconstruction(rec)
            for r in rs:
                r["seed"] = s
            all_rows += rs
            mean_rows += mean_image_verdicts(rec, split)
            m = rec.metrics
            per_seed.append({"seed": s, "run": rec.id, "E": m["attack_acc_top1"],
                             "dlib": m["extra_judges"]["dlib"]["attack_acc_top1"],
                             "attack_seconds": m["attack_seconds"], "wall_seconds": round(wall, 1)})
            print(f"{name} seed {s}: E {m['attack_acc_top1']['value']:.1%}, dlib "
                  f"{m['extra_judges']['dlib']['attack_acc_top1']['value']:.1%}, attack {m['attack_seconds']:.0f} s "
                  f"({wall:.0f} s with loading and judging)", flush=True)
        rows[name] = all_rows
        result["attacks"][name] = {"params": apply_preset(a.preset, name, {}), "E": pooled(all_rows, "eval_top1"),
                                   "dlib": pooled(all_rows, "top1@dlib"), "per_seed": per_seed,
                                   "dlib_mean_image": pooled(mean_rows, "top1@dlib")}
    names = list(rows)
    for other in names[1:]:
        result[f"{names[0]} - {other}"] = {"E": paired(rows[names[0]], rows[other], "eval_top1"),
                                           "dlib": paired(rows[names[0]], rows[other], "top1@dlib")}
    for name, r in result["attacks"].items():
        e, d = r["E"], r["dlib"]
        secs = [p["attack_seconds"] for p in r["per_seed"]]
        print(f"{name}: E {e['value']:.1%} [{e['lo']:.1%}, {e['hi']:.1%}], dlib {d['value']:.1%} "
              f"[{d['lo']:.1%}, {d['hi']:.1%}] over {len(seeds)} seeds; attack {min(secs):.0f}-{max(secs):.0f} s; "
              f"dlib on each identity's mean image {r['dlib_mean_image']['value']:.1%} "
              f"[{r['dlib_mean_image']['lo']:.1%}, {r['dlib_mean_image']['hi']:.1%}]")
    for k, v in result.items():
        if " - " in k:
            print(paired_words(k, v))
    return finish(result, a.out)


if __name__ == "__main__":
    sys.exit(main())
