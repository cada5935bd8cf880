"""Does the BatchNorm initialisation of the ResNet matter? timm's zero_init_last vs torchvision's / RoLSS's ones.

    python scripts/measure_bn_init.py --workspace WS [--seeds 0,1,2] [--attack-seed 1] \
        [--out docs/measurements/bn_init.json] [--md docs/measurements/bn_init.md]

Trains the classroom target (ResNet-18 on ORL 32 px with exactly the shipped classroom target's training
configuration, assets/classroom/classroom.json) once per training seed with `zero_init_last` true (timm's
default: the last BatchNorm of each residual branch starts at 0) and false (every BatchNorm weight at 1, as
torchvision's ResNet and the RoLSS code), then attacks each with GMI and the `classroom` preset (one attack
seed), judged by the shipped VGG-11 evaluation model E and by dlib. The two inits of one training seed share
everything else (data order, augmentation draws, every other initial weight), so they are compared paired:
natural accuracy over the same test images (bootstrap over identities, seeds pooled) and attack top-1 over
the same identities and seeds, plus the per-seed values. The judges never enter an attack.
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

INITS = (("zero", True), ("ones", False))  # (label, zero_init_last)


def classroom_target_config() -> tuple[dict, dict]:
    """The shipped classroom target's training and data configuration (what `classroom export` recorded)."""
    from mivis.paths import assets_dir
    manifest = json.loads((assets_dir() / "classroom" / "classroom.json").read_text())
    cfg = next(m["config"] for m in manifest["models"] if m["role"] == "target")
    train = {k: v for k, v in cfg["train"].items() if v is not None}
    return train, cfg["data"]


def test_rows(ws, run_id: str, split) -> list[dict]:
    """One row per held-out image: its identity and whether the target classifies it correctly."""
    import torch
    from mivis.data import sequential
    from mivis.train import load_classifier
    model, _ = load_classifier(ws, run_id)
    rows, i = [], 0
    with torch.no_grad():
        for xb in sequential(split.test.x, 256, torch.device("cpu")):
            pred = model(xb).argmax(1)
            for p in pred.tolist():
                y = int(split.test.y[i])
                rows.append({"identity": y, "correct": float(p == y)})
                i += 1
    return rows


def pooled(rows: list[dict], key: str) -> dict:
    import numpy as np
    from mivis.evaluation.bootstrap import bootstrap_mean
    return bootstrap_mean(np.array([float(r[key]) for r in rows]), np.array([r["identity"] for r in rows]), 2000)


def paired(a: list[dict], b: list[dict], key: str) -> dict:
    import numpy as np
    from mivis.evaluation.bootstrap import paired_difference
    return paired_difference(np.array([float(r[key]) for r in a]), np.array([r["identity"] for r in a]),
                             np.array([float(r[key]) for r in b]), np.array([r["identity"] for r in b]))


def seed_interval(diffs: list[float]) -> dict:
    """Mean of the per-seed paired differences with a t interval over the seeds (training noise)."""
    import statistics
    t975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
    m = statistics.fmean(diffs)
    if len(diffs) < 2:
        return {"value": m, "lo": None, "hi": None, "n": len(diffs)}
    h = t975.get(len(diffs) - 1, 1.96) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return {"value": m, "lo": m - h, "hi": m + h, "n": len(diffs)}


def fmt(m: dict, sign: bool = False) -> str:
    f = "{:+.1%}" if sign else "{:.1%}"
    if m.get("lo") is None:
        return f.format(m["value"])
    return f"{f.format(m['value'])} [{f.format(m['lo'])}, {f.format(m['hi'])}]"


def markdown(result: dict) -> str:
    lines = ["# BatchNorm initialisation of the ResNet: timm's zero_init_last vs every BatchNorm at 1", "",
             f"`python scripts/measure_bn_init.py` on {result['machine']}, {result['date']} "
             f"({result['wall_minutes']:.0f} min wall, niced, one torch thread).", "",
             f"Target: {result['target']}; attack: GMI, `{result['preset']}` preset, attack seed "
             f"{result['attack_seed']}, shipped prior orl32-gmi; judges: E = {result['eval']}, and dlib. "
             f"Training seeds {', '.join(map(str, result['seeds']))}; the two inits of one seed share every other "
             "random draw. Intervals: 95% bootstrap over identities (seeds pooled, an identity's images or "
             "reconstructions of every seed together); paired differences resample the same identities for both "
             "inits. `over seeds`: the mean of the per-seed differences with a t interval over the seeds.", "",
             "| init | natural accuracy | GMI top-1 under E | GMI top-1 under dlib |", "|---|---|---|---|"]
    for label, _ in INITS:
        r = result["inits"][label]
        lines.append(f"| {r['words']} | {fmt(r['natural_acc'])} | {fmt(r['E'])} | {fmt(r['dlib'])} |")
    d = result["zero - ones"]
    lines.append(f"| zero - ones (paired) | {fmt(d['natural_acc'], True)} | {fmt(d['E'], True)} | "
                 f"{fmt(d['dlib'], True)} |")
    s = result["zero - ones over seeds"]
    lines.append(f"| zero - ones (over seeds) | {fmt(s['natural_acc'], True)} | {fmt(s['E'], True)} | "
                 f"{fmt(s['dlib'], True)} |")
    lines += ["", "Per seed:", "", "| seed | init | natural accuracy | E | dlib | training s | attack s |",
              "|---|---|---|---|---|---|---|"]
    for label, _ in INITS:
        for p in result["inits"][label]["per_seed"]:
            lines.append(f"| {p['seed']} | {label} | {p['natural_acc']:.1%} | {p['E']['value']:.1%} | "
                         f"{p['dlib']['value']:.1%} | {p['train_seconds']:.0f} | {p['attack_seconds']:.0f} |")
    verdict = [k for k in ("natural_acc", "E", "dlib") if d[k].get("resolved")]
    lines += ["", "Resolved paired differences (interval excludes 0): "
              + (", ".join(verdict) if verdict else "none") + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--seeds", default="0,1,2", help="training seeds")
    ap.add_argument("--attack-seed", type=int, default=1)
    ap.add_argument("--preset", default="classroom")
    ap.add_argument("--epochs", type=int, default=0, help="override the classroom target's epochs (0: keep them)")
    ap.add_argument("--out", default="")
    ap.add_argument("--md", default="")
    a = ap.parse_args(argv)
    from mivis.attacks import attack_run
    from mivis.attacks.presets import apply_preset
    from mivis.classroom import import_classroom
    from mivis.data import load_split
    from mivis.priors import import_prior
    from mivis.runs import Workspace
    from mivis.train import train_run
    t_start = time.monotonic()
    ws = Workspace(a.workspace)
    judge = import_classroom(ws)["eval"]
    prior = import_prior("orl32-gmi", ws).id
    train, data = classroom_target_config()
    if a.epochs:
        train["epochs"] = a.epochs
    split = load_split(data)
    seeds = [int(s) for s in a.seeds.split(",")]
    params = apply_preset(a.preset, "gmi", {"seed": a.attack_seed})
    result = {"machine": f"{cpu_model()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M UTC",
              time.gmtime()), "target": "ResNet-18, ORL 32 px, the classroom target's training (" + ", ".join(
                  f"{k} {v}" for k, v in train.items() if k not in ("seed", "device")) + ")",
              "data": data, "preset": a.preset, "attack": "gmi", "attack_params": params, "attack_seed": a.attack_seed,
              "eval": f"the shipped classroom VGG-11 ({judge})", "seeds": seeds, "inits": {}}
    rows: dict[str, dict[str, list]] = {}
    for label, zero in INITS:
        per_seed, acc_rows, att_rows = [], [], []
        for s in seeds:
            t0 = time.monotonic()
            tg = train_run("target", {**train, "seed": s}, data, arch_params={"zero_init_last": zero}, workspace=ws,
                           name=f"bn-init {label} seed {s}")
            tr = test_rows(ws, tg.id, split)
            for r in tr:
                r["seed"] = s
            acc_rows += tr
            mine = sum(r["correct"] for r in tr) / len(tr)
            if abs(mine - tg.metrics["natural_acc"]) > 1e-9:  # the rows must be the run's own accuracy
                raise RuntimeError(f"{tg.id}: test rows give {mine:.4f}, the run recorded {tg.metrics['natural_acc']:.4f}")
            rec = attack_run("gmi", tg.id, prior, params=params, eval_run=judge, dlib=True, workspace=ws,
                             name=f"bn-init {label} seed {s} gmi {a.preset}")
            rs = rec.read_json("evaluation.json")["per_reconstruction"]
            for r in rs:
                r["seed"] = s
            att_rows += rs
            m = rec.metrics
            per_seed.append({"seed": s, "target": tg.id, "attack": rec.id, "natural_acc": tg.metrics["natural_acc"],
                             "E": m["attack_acc_top1"], "dlib": m["extra_judges"]["dlib"]["attack_acc_top1"],
                             "train_seconds": tg.metrics["train_seconds"], "attack_seconds": m["attack_seconds"],
                             "wall_seconds": round(time.monotonic() - t0, 1)})
            print(f"{label} seed {s}: natural {tg.metrics['natural_acc']:.1%}, E {m['attack_acc_top1']['value']:.1%}, "
                  f"dlib {m['extra_judges']['dlib']['attack_acc_top1']['value']:.1%} "
                  f"({per_seed[-1]['wall_seconds']:.0f} s)", flush=True)
        rows[label] = {"acc": acc_rows, "att": att_rows}
        result["inits"][label] = {
            "zero_init_last": zero, "words": "zero_init_last true (timm)" if zero else
            "zero_init_last false (every BatchNorm at 1: torchvision, RoLSS)",
            "natural_acc": pooled(acc_rows, "correct"), "E": pooled(att_rows, "eval_top1"),
            "dlib": pooled(att_rows, "top1@dlib"), "per_seed": per_seed}
    z, o = rows["zero"], rows["ones"]
    result["zero - ones"] = {"natural_acc": paired(z["acc"], o["acc"], "correct"),
                             "E": paired(z["att"], o["att"], "eval_top1"),
                             "dlib": paired(z["att"], o["att"], "top1@dlib")}
    zs, os_ = result["inits"]["zero"]["per_seed"], result["inits"]["ones"]["per_seed"]
    result["zero - ones over seeds"] = {
        "natural_acc": seed_interval([p["natural_acc"] - q["natural_acc"] for p, q in zip(zs, os_)]),
        "E": seed_interval([p["E"]["value"] - q["E"]["value"] for p, q in zip(zs, os_)]),
        "dlib": seed_interval([p["dlib"]["value"] - q["dlib"]["value"] for p, q in zip(zs, os_)])}
    result["wall_minutes"] = round((time.monotonic() - t_start) / 60, 1)
    text = markdown(result)
    print(text)
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    if a.md:
        Path(a.md).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
