"""Build assets/demo/: the finished result the home page shows at once (no torch needed to show it).

    python scripts/make_demo.py                        # train + attack from scratch (ORL, 32 px), then export
    python scripts/make_demo.py --from FULL DEFENDED [LAYERS] --workspace WS   # export existing runs

From scratch it trains, with fixed seeds, a ResNet-18 target, the same with the last stage's skips
removed (RoLSS) and a VGG-11 evaluation model on the ORL default split at 32 px, imports the shipped
GMI prior, attacks both targets with GMI, measures Fisher information per layer, and exports:
demo.json (metrics with intervals; the paired difference full - RoLSS in top-1 attack accuracy over the
same identities with its interval, evaluation.compare_runs; per shown identity the reconstruction under
each model with its verdict and likelihood, and for a wrong verdict the real face of the identity the
judge picked; histogram data; Fisher information) plus one PNG per real face, per reconstruction and per
judged identity. Re-running it on the same machine type with the same code rebuilds the same files (seeded
training and attacks; PNGs and JSON carry no timestamps and no run ids, which carry their creation time).
The shipped assets/demo/ was built before attacks ran in channels_last on the CPU (commit 8e9b5e0): a
rebuild now gives close, not byte-identical, reconstructions.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = {"dataset": "orl", "image_size": 32}
N_PAIRS = 10
ARCH_WORDS = {"vgg11": "VGG-11", "resnet18": "ResNet-18"}


def _png(arr, path: Path) -> None:
    from PIL import Image
    a = arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    Image.fromarray(a).save(path, format="PNG", optimize=False)


def build(ws, device: str, epochs: int, restarts: int, iterations: int, snapshots: int, log=print):
    """Train and attack everything the demo shows; returns (full attack, defended attack, layers) run ids."""
    from mivis.analysis import layers_run
    from mivis.attacks import attack_run
    from mivis.priors import import_prior, shipped_priors
    from mivis.train import train_run
    train = {"arch": "resnet18", "epochs": epochs, "seed": 0, "device": device}
    log("training the full ResNet-18 target")
    full = train_run("target", train, DATA, workspace=ws, name="ResNet-18 (full)")
    log(f"  natural accuracy {full.metrics['natural_acc']:.1%}")
    log("training the RoLSS target (last stage's skips removed)")
    rolss = train_run("target", train, DATA, defenses={"skips": {}}, workspace=ws, name="ResNet-18 (RoLSS)")
    log(f"  natural accuracy {rolss.metrics['natural_acc']:.1%}")
    log("training the VGG-11 evaluation model")
    ev = train_run("eval", {**train, "arch": "vgg11", "lr": 1e-3}, DATA, workspace=ws, name="VGG-11 judge")
    log(f"  natural accuracy {ev.metrics['natural_acc']:.1%}")
    name = next((n for n in shipped_priors() if "32" in n), None)
    if name is None:
        raise SystemExit("no shipped 32 px prior in assets/priors/")
    prior = import_prior(name, ws)
    params = {"restarts": restarts, "iterations": iterations, "seed": 0, "device": device}
    runs = []
    for t in (full, rolss):
        log(f"GMI on {t.name}")
        a = attack_run("gmi", t.id, prior.id, params=params, eval_run=ev.id, workspace=ws, name=f"GMI on {t.name}")
        log(f"  top-1 {a.metrics['attack_acc_top1']['value']:.1%}")
        runs.append(a.id)
    log("Fisher information per layer")
    lay = layers_run(full.id, runs[0], {"snapshots": snapshots, "device": device}, workspace=ws)
    return runs[0], runs[1], lay.id


def add_judged_faces(pairs: list[dict], split, out: Path) -> None:
    """For every wrong verdict, the real face of the identity the judge picked ("wrong: s7" shows who
    s7 is): its first private training image, written as judged_<name>.png, named in the pair."""
    from mivis.data import to_uint8
    names = list(split.private_names)
    for pr in pairs:
        for v in (pr, pr.get("defended") or {}):
            who = v.get("predicted")
            if v and not v.get("correct") and who in names:
                f = f"judged_{who}.png"
                if not (out / f).exists():
                    _png(to_uint8(split.private_images(names.index(who), "train")[:1])[0], out / f)
                v["predicted_real"] = f


def judged_faces_only(out: Path) -> None:
    """Add the judged identities' real faces to an existing demo.json (needs only the data, no runs)."""
    from mivis.data import load_split
    spec = json.loads((out / "demo.json").read_text())
    add_judged_faces(spec["pairs"], load_split(DATA), out)
    (out / "demo.json").write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")


def export(ws, full_attack: str, defended_attack: str, layers: str | None, out: Path) -> Path:
    from mivis.data import load_split, to_uint8
    from mivis.evaluation import compare_runs
    from mivis.weights import load_tensors
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    a = ws.get(full_attack)
    b = ws.get(defended_attack)
    ta, tb = ws.get(a.config["target_run"]), ws.get(b.config["target_run"])
    ev_a = json.loads(a.file("evaluation.json").read_text())
    ev_b = json.loads(b.file("evaluation.json").read_text())
    split = load_split(a.config["data"])
    names = split.private_names
    t, _ = load_tensors(a.file("reconstructions.safetensors"))
    x = to_uint8(t["x"].float())
    rows = ev_a["per_reconstruction"]
    rows_b = ev_b["per_reconstruction"]
    tb_x, _ = load_tensors(b.file("reconstructions.safetensors"))
    x_b = to_uint8(tb_x["x"].float())
    pairs = []
    for c in sorted(set(t["y"].tolist()))[:N_PAIRS]:
        idx = [i for i, r in enumerate(rows) if r["identity"] == c]
        best = max(idx, key=lambda i: rows[i]["p_target"])  # the attacker's own pick: highest target likelihood
        _png(to_uint8(split.private_images(c, "train")[:1])[0], out / f"real_{c:02d}.png")
        _png(x[best], out / f"recon_{c:02d}.png")
        r = rows[best]
        pair = {"identity": names[c], "real": f"real_{c:02d}.png", "recon": f"recon_{c:02d}.png",
                "correct": bool(r["eval_top1"]), "likelihood": round(float(r["p_target"]), 4),
                "predicted": names[r["eval_pred"]]}
        # the same identity reconstructed under the defended model (its own highest-likelihood restart)
        idx_b = [i for i, rb in enumerate(rows_b) if rb["identity"] == c]
        if idx_b:
            best_b = max(idx_b, key=lambda i: rows_b[i]["p_target"])
            rb = rows_b[best_b]
            _png(x_b[best_b], out / f"recon_defended_{c:02d}.png")
            pair["defended"] = {"recon": f"recon_defended_{c:02d}.png", "correct": bool(rb["eval_top1"]),
                                "likelihood": round(float(rb["p_target"]), 4), "predicted": names[rb["eval_pred"]]}
        pairs.append(pair)
    add_judged_faces(pairs, split, out)

    def acc(rec):
        return {"value": rec.metrics["natural_acc"], "lo": None, "hi": None}
    ma, mb = ev_a["metrics"], ev_b["metrics"]
    # the paired difference full - RoLSS in top-1 attack accuracy over the same identities (same judge)
    d = compare_runs(ws, a.id, b.id)
    paired = {"metric": d["metric"], "a": "full", "b": "RoLSS", "n": int(d["n"]), "resolved": bool(d["resolved"]),
              "same_starting_latents": bool(d["same_starting_latents"]),
              **{k: round(float(d[k]), 4) for k in ("value", "lo", "hi")}}
    chance = 1 / ta.config["model"]["num_classes"]
    judge = ARCH_WORDS.get(ev_a["judge"]["arch"], ev_a["judge"]["arch"])
    spec = {
        "title": f"GMI against a ResNet-18 trained on {len(names)} ORL identities "
                 f"({ta.config['model']['img_size']} px): full model vs RoLSS",
        "caption": (f"The attacker never saw these people: its prior was trained on {len(split.public_names)} other "
                    f"identities. {a.config['attack']['params']['restarts']} restarts x "
                    f"{a.config['attack']['params']['iterations']} iterations per identity; judged by a {judge} "
                    f"evaluation model (another architecture, trained on the same private images; Be the judge asks "
                    f"people, who never saw them). Chance is {chance:.0%} top-1. Intervals: "
                    f"{ev_a.get('interval', '95% bootstrap over identities')}."),
        "metrics": [
            {"label": "Natural acc. (full)", "value": acc(ta)},
            {"label": "Attack acc. top-1 (full)", "value": ma["attack_acc_top1"]},
            {"label": "Natural acc. (RoLSS)", "value": acc(tb)},
            {"label": "Attack acc. top-1 (RoLSS)", "value": mb["attack_acc_top1"]},
            {"label": "Attack acc. top-5 (full)", "value": ma["attack_acc_top5"]},
            {"label": "Attack acc. top-5 (RoLSS)", "value": mb["attack_acc_top5"]},
        ],
        "paired": paired,
        "pairs": pairs,
        "histograms": [
            {"label": "full", "likelihood": [round(r["p_target"], 4) for r in ev_a["per_reconstruction"]],
             "correct": [bool(r["eval_top1"]) for r in ev_a["per_reconstruction"]]},
            {"label": "RoLSS", "likelihood": [round(r["p_target"], 4) for r in ev_b["per_reconstruction"]],
             "correct": [bool(r["eval_top1"]) for r in ev_b["per_reconstruction"]]}],
        # run ids carry their creation time: the settings that made the runs are recorded instead
        "settings": {"epochs": ta.config["train"]["epochs"], "seed": ta.config["train"]["seed"],
                     "restarts": a.config["attack"]["params"]["restarts"],
                     "iterations": a.config["attack"]["params"]["iterations"],
                     "attack_seed": a.config["attack"]["params"]["seed"]},
        "notes": "Built by scripts/make_demo.py from real runs. Reconstructions shown: each identity's restart "
                 "with the highest target likelihood, under each model.",
        "credit": "ORL faces: AT&T Laboratories Cambridge",
    }
    if layers:
        d = json.loads(ws.get(layers).file("layers.json").read_text())
        short = [n.split("+")[0].removeprefix("body.") for n in d["layers"]]
        series = {"classification": [round(r["normalised"], 5) for r in d["classification"]]}
        if d.get("mi_final"):
            series["model inversion"] = [round(r["normalised"], 5) for r in d["mi_final"]]
        spec["fisher"] = {"layers": short, "series": series}
    (out / "demo.json").write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", help="workspace with the runs (default: a temporary one when building)")
    p.add_argument("--out", default=str(ROOT / "assets" / "demo"))
    p.add_argument("--from", dest="runs", nargs="+", metavar="RUN",
                   help="export existing runs: FULL_ATTACK DEFENDED_ATTACK [LAYERS_ANALYSIS]")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--restarts", type=int, default=5)
    p.add_argument("--iterations", type=int, default=100, help="GMI iterations (the classroom budget: 100)")
    p.add_argument("--snapshots", type=int, default=0, help="MI Fisher snapshots over the attack (0 = final only; "
                   ">0 needs the analysis step hook to run with gradients enabled)")
    p.add_argument("--judged-faces-only", action="store_true",
                   help="only add the real faces of the identities the judge picked to an existing demo.json")
    args = p.parse_args(argv)
    if args.judged_faces_only:
        judged_faces_only(Path(args.out))
        print(f"updated {args.out}")
        return 0
    from mivis.runs import Workspace
    tmp = None
    if args.workspace:
        ws = Workspace(args.workspace)
    else:
        tmp = tempfile.mkdtemp(prefix="mivis-demo-")
        ws = Workspace(tmp)
    try:
        if args.runs:
            if len(args.runs) not in (2, 3):
                p.error("--from takes FULL_ATTACK DEFENDED_ATTACK [LAYERS]")
            full, defended = args.runs[:2]
            layers = args.runs[2] if len(args.runs) == 3 else None
        else:
            full, defended, layers = build(ws, args.device, args.epochs, args.restarts, args.iterations,
                                           args.snapshots)
        out = export(ws, full, defended, layers, Path(args.out))
        print(f"wrote {out}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
