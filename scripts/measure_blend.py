"""A blend of two attacks' outputs: the posterior mean's average with the mean of IF-GMI's restarts.

    python scripts/measure_blend.py --workspace WS [--seeds 1,2,3] [--weights 0.5,0.75]
                                    [--pmean-preset classroom] [--pmean-params JSON]
                                    [--out docs/measurements/blend.json]

Why: the posterior mean (pmean) is a blurred average that keeps shared cues of the person; IF-GMI's
restarts are sharp faces the target is certain of; each alone names the person to dlib about a fifth of the
time (docs/measurements/leak.md). This asks whether their pixel blend, w x pmean + (1 - w) x the mean of
IF-GMI's restarts per identity, carries more of the person than either. Both attacks run through
`attack_run` (what the app and the CLI run) on the shipped classroom target with the same seed: IF-GMI
with the classroom preset (the one-click attack), pmean with `--pmean-preset` (classroom: 20,000 samples;
none: its defaults, 5 restarts of 100,000 each; `--pmean-params` over either). The blend uses only the two
attacks' outputs: no judge and no private image enters it. Every image (one per identity and seed) is then
judged by E and dlib; prints and writes top-1 with 95% bootstrap intervals over identities, dlib's mean rank
of the true identity among the 20 (chance 10.5), and the paired differences against pmean alone and
IF-GMI's mean image.
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
from measure_leak import classroom_setup, finish, mean_per_identity, paired, pooled  # noqa: E402
from measure_oracle_start import judged_rows  # noqa: E402
from measure_posterior_mean import dlib_ranks  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

PMEAN = "posterior mean"
IFGMI = "IF-GMI mean of restarts"


def blend(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    """weight x a + (1 - weight) x b, pixel by pixel."""
    return weight * a + (1 - weight) * b


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--weights", default="0.5,0.75", help="weights of the posterior mean in the blend")
    ap.add_argument("--pmean-preset", default="classroom", help="classroom, or none for pmean's defaults")
    ap.add_argument("--pmean-params", default="{}", help="pmean parameters over the preset, as JSON")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    from mivis.attacks import attack_run
    from mivis.attacks.presets import apply_preset
    from mivis.evaluation.judges import load_judge
    from mivis.runs import Workspace
    ws = Workspace(a.workspace)
    runs, prior_id, split = classroom_setup(ws)
    judge = load_judge(ws, runs["eval"], ws.get(runs["target"]), torch.device("cpu"))
    ids = torch.arange(split.num_classes)
    weights = [float(w) for w in a.weights.split(",")]
    preset = None if a.pmean_preset == "none" else a.pmean_preset
    rows: dict[str, list[dict]] = {}
    per_seed = []
    for s in [int(v) for v in a.seeds.split(",")]:
        pm_params = apply_preset(preset, "pmean", {**json.loads(a.pmean_params), "seed": s})
        pm = attack_run("pmean", runs["target"], prior_id, params=pm_params,
                        eval_run=runs["eval"], workspace=ws, name=f"pmean seed {s}")
        ig = attack_run("ifgmi", runs["target"], prior_id, params=apply_preset("classroom", "ifgmi", {"seed": s}),
                        eval_run=runs["eval"], workspace=ws, name=f"ifgmi classroom seed {s}")
        (pm_ids, pmx), (ig_ids, igx) = mean_per_identity(pm), mean_per_identity(ig)
        if not (torch.equal(pm_ids, ids) and torch.equal(ig_ids, ids)):
            raise SystemExit("both attacks must reconstruct every private identity")
        images = {PMEAN: pmx, IFGMI: igx, **{f"blend {w}": blend(pmx, igx, w) for w in weights}}
        for name, im in images.items():
            judged = judged_rows(judge, split, im, ids)
            rows.setdefault(name, []).extend({**r, "dlib_rank": int(k), "seed": s}
                                             for r, k in zip(judged, dlib_ranks(im, ids, split)))
        seconds = {"pmean": pm.metrics["attack_seconds"], "ifgmi": ig.metrics["attack_seconds"]}
        per_seed.append({"seed": s, "pmean_run": pm.id, "ifgmi_run": ig.id, "attack_seconds": seconds})
        print(f"seed {s}: pmean {seconds['pmean']:.0f} s, IF-GMI {seconds['ifgmi']:.0f} s", flush=True)
    result = {"machine": f"{cpu_model()}, {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seeds": a.seeds,
              "pmean_preset": a.pmean_preset, "pmean_params": json.loads(a.pmean_params), "weights": weights,
              "per_seed": per_seed, "methods": {},
              "paired": {}, "rows": rows}
    for name, r in rows.items():
        rk = np.array([q["dlib_rank"] for q in r], dtype=float)
        m = {"E": pooled(r, "eval_top1"), "dlib": pooled(r, "top1@dlib"), "dlib_mean_rank": round(float(rk.mean()), 2),
             "n": len(r)}
        result["methods"][name] = m
        print(f"{name}: E {m['E']['value']:.1%}, dlib {m['dlib']['value']:.1%} [{m['dlib']['lo']:.1%}, "
              f"{m['dlib']['hi']:.1%}], dlib mean rank {m['dlib_mean_rank']:.2f} ({len(r)} images)")
    for name in rows:
        if not name.startswith("blend"):
            continue
        for base in (PMEAN, IFGMI):
            d, k = paired(rows[name], rows[base], "top1@dlib"), paired(rows[name], rows[base], "dlib_rank")
            result["paired"][f"{name} - {base}"] = {"dlib": d, "dlib_mean_rank": k}
            print(f"  {name} - {base}: dlib {d['value']:+.1%} [{d['lo']:+.1%}, {d['hi']:+.1%}], mean rank "
                  f"{k['value']:+.2f} [{k['lo']:+.2f}, {k['hi']:+.2f}]")
    return finish(result, a.out)


if __name__ == "__main__":
    sys.exit(main())
