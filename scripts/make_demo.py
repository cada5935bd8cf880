"""Build assets/demo/: the finished result the home page shows at once (no torch needed to show it).

    python scripts/make_demo.py [--attack ifgmi]       # train + attack from scratch (ORL, 32 px), then export
    python scripts/make_demo.py --from FULL DEFENDED [LAYERS] --workspace WS   # export existing runs

From scratch it trains, with fixed seeds, a ResNet-18 target, the same with the last stage's skips
removed (RoLSS) and a VGG-11 evaluation model on the ORL default split at 32 px, imports the shipped
GMI prior, attacks both targets with --attack (default IF-GMI, the strongest one-click attack; gmi and
the other prior-based attacks work too) at the classroom preset, measures Fisher information per layer,
and exports: demo.json (metrics with intervals under both judges: dlib, the independent face recogniser,
and the evaluation model E; the paired difference full - RoLSS in top-1 attack accuracy over the same
identities with its interval under each judge, evaluation.compare_runs; chance level; per shown identity
the reconstruction under each model with both judges' verdicts and its likelihood, and for a wrong
verdict the real face of the identity that judge named; histogram data; Fisher information) plus one PNG
per real face, per reconstruction and per named identity. The attack runs must carry dlib's verdicts
(every attack has them when dlib is installed; older runs: `python -m mivis evaluate rejudge --dlib RUN`);
whom dlib named is recomputed here for the shown faces from the stored reconstructions (the runs store
only dlib's right/wrong). Re-running it on the same machine type with the same code rebuilds the same files (seeded
training and attacks; PNGs and JSON carry no timestamps and no run ids, which carry their creation time).
The shipped assets/demo/ is `--from` the seed-0 runs of studies/cpu/g-leak.toml (full and RoLSS ResNet-18,
IF-GMI at its classroom preset, the sweep's own VGG-11 E, dlib; docs/v2/leak/findings.md) and their layers
analysis (`python -m mivis analyze layers`), exported on 2026-12-07.
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
ATTACK_NAMES = {"gmi": "GMI", "kedmi": "KEDMI", "lomma": "LOMMA", "plgmi": "PLG-MI", "ppa": "PPA-style",
                "ifgmi": "IF-GMI", "whitebox": "White-box pixel search"}
DEFAULT_ATTACK = "ifgmi"  # the strongest attack the Attack page offers in one click (issue 28)


def _png(arr, path: Path) -> None:
    from PIL import Image
    a = arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    Image.fromarray(a).save(path, format="PNG", optimize=False)


def attack_params(attack: str, restarts: int | None, iterations: int | None, device: str) -> dict:
    """The classroom preset of `attack` (what the Attack page runs in one click), with the given overrides."""
    from mivis.attacks import ATTACKS
    from mivis.attacks.presets import apply_preset
    from mivis.params import ParamError
    if attack not in ATTACKS:
        raise ParamError(f"--attack: {attack!r} is not one of {', '.join(ATTACKS.names())}")
    given = {k: v for k, v in (("restarts", restarts), ("iterations", iterations)) if v is not None}
    return apply_preset("classroom", attack, {**given, "seed": 0, "device": device})


def build(ws, device: str, epochs: int, restarts: int | None, iterations: int | None, snapshots: int,
          attack: str = DEFAULT_ATTACK, log=print):
    """Train and attack everything the demo shows; returns (full attack, defended attack, layers) run ids."""
    from mivis.analysis import layers_run
    from mivis.attacks import attack_run
    from mivis.evaluation import dlib_judge
    from mivis.priors import import_prior, shipped_priors
    from mivis.train import train_run
    params = attack_params(attack, restarts, iterations, device)  # refused before any training
    dlib_judge.check_available()  # the demo leads with dlib's verdicts
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
    runs = []
    word = ATTACK_NAMES.get(attack, attack)
    for t in (full, rolss):
        log(f"{word} on {t.name}")
        a = attack_run(attack, t.id, prior.id, params=params, eval_run=ev.id, workspace=ws, dlib=True,
                       name=f"{word} on {t.name}")
        log(f"  top-1 under E {a.metrics['attack_acc_top1']['value']:.1%}, under dlib "
            f"{a.metrics['extra_judges']['dlib']['attack_acc_top1']['value']:.1%}")
        runs.append(a.id)
    log("Fisher information per layer")
    lay = layers_run(full.id, runs[0], {"snapshots": snapshots, "device": device}, workspace=ws)
    return runs[0], runs[1], lay.id


def add_judged_faces(pairs: list[dict], split, out: Path) -> None:
    """For every wrong verdict (E's, and dlib's under "dlib"), the real face of the identity the judge
    named ("wrong: s7" shows who s7 is): its first private training image, written as judged_<name>.png,
    named in the verdict."""
    from mivis.data import to_uint8
    names = list(split.private_names)
    for pr in pairs:
        models = [pr, pr.get("defended") or {}]
        for v in [*models, *(m.get("dlib") or {} for m in models)]:
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


def _dlib_shown(rec, x_shown, y_shown: list[int], split, rows_shown: list[dict], log=print) -> list[dict]:
    """dlib's verdict on each shown reconstruction and whom it named. The runs store only dlib's right/wrong
    (top1@dlib), so dlib judges the shown faces again, from the stored reconstructions (what the PNGs show);
    a verdict that differs from the stored one (a borderline face: the run judged its float32 images) is
    reported, and the shown face gets the verdict on what it shows."""
    import torch
    from mivis.evaluation.dlib_judge import dlib_verdicts
    v = dlib_verdicts(x_shown, torch.tensor(y_shown), split)
    names = split.private_names
    out = []
    for i, r in enumerate(rows_shown):
        ok = bool(v["top1"][i])
        if ok != bool(r["top1@dlib"]):
            log(f"  note: run {rec.id}, identity {names[y_shown[i]]}: dlib's verdict on the stored image "
                f"({'right' if ok else 'wrong'}) differs from the run's")
        out.append({"correct": ok, "predicted": names[int(v["pred"][i])]})
    return out


def _paired(d: dict) -> dict:
    return {"metric": d["metric"], "a": "full", "b": "RoLSS", "n": int(d["n"]), "resolved": bool(d["resolved"]),
            "same_starting_latents": bool(d["same_starting_latents"]),
            **{k: round(float(d[k]), 4) for k in ("value", "lo", "hi")}}


def _rounded(m: dict) -> dict:
    return {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in m.items()}


def export(ws, full_attack: str, defended_attack: str, layers: str | None, out: Path, log=print) -> Path:
    """demo.json + PNGs of two finished attack runs of one attack (full model, RoLSS) judged by the same E and
    by dlib, and optionally a layers analysis; every input is checked before anything in `out` changes."""
    from mivis.evaluation import compare_runs, dlib_judge
    from mivis.evaluation.compare import JUDGE_METRIC, load_evaluation
    from mivis.params import ParamError
    dlib_judge.check_available()
    (a, ev_a), (b, ev_b) = load_evaluation(ws, full_attack), load_evaluation(ws, defended_attack)
    for rec, ev in ((a, ev_a), (b, ev_b)):
        if not dlib_judge.has_verdicts(ev):
            raise ParamError(f"attack run {rec.id} has no dlib verdicts; add them with "
                             f"`python -m mivis evaluate rejudge --dlib {rec.id}`")
    if a.config["attack"]["name"] != b.config["attack"]["name"]:
        raise ParamError(f"runs {a.id} and {b.id} ran different attacks ({a.config['attack']['name']} vs "
                         f"{b.config['attack']['name']}); the demo compares one attack on two models")
    ta, tb = ws.get(a.config["target_run"]), ws.get(b.config["target_run"])
    # the paired differences first: they refuse runs on other identities or judged by other models
    d_e = compare_runs(ws, a.id, b.id)
    d_dlib = compare_runs(ws, a.id, b.id, JUDGE_METRIC["dlib"])
    # written into a fresh folder beside `out` and moved in at the end: a failure leaves the old demo whole
    final, out = out, Path(tempfile.mkdtemp(prefix=".demo-", dir=_parent(out)))
    try:
        _write(ws, a, b, ev_a, ev_b, ta, tb, d_e, d_dlib, layers, out, log)
        final.mkdir(parents=True, exist_ok=True)
        for old in [*final.glob("*.png"), final / "demo.json"]:
            old.unlink(missing_ok=True)
        for f in sorted(out.iterdir()):
            f.replace(final / f.name)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return final


def _parent(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent


def _write(ws, a, b, ev_a, ev_b, ta, tb, d_e, d_dlib, layers, out: Path, log) -> None:
    """demo.json and its PNGs into `out` (an empty folder)."""
    from mivis.data import load_split, to_uint8
    split = load_split(a.config["data"])
    names = split.private_names
    t = a.read_tensors("reconstructions.safetensors")
    tb_x = b.read_tensors("reconstructions.safetensors")
    x, x_b = to_uint8(t["x"].float()), to_uint8(tb_x["x"].float())
    rows, rows_b = ev_a["per_reconstruction"], ev_b["per_reconstruction"]
    pairs, shown = [], {"a": [], "b": []}
    for c in sorted(set(t["y"].tolist()))[:N_PAIRS]:
        idx = [i for i, r in enumerate(rows) if r["identity"] == c]
        best = max(idx, key=lambda i: rows[i]["p_target"])  # the attacker's own pick: highest target likelihood
        _png(to_uint8(split.private_images(c, "train")[:1])[0], out / f"real_{c:02d}.png")
        _png(x[best], out / f"recon_{c:02d}.png")
        r = rows[best]
        pair = {"identity": names[c], "real": f"real_{c:02d}.png", "recon": f"recon_{c:02d}.png",
                "correct": bool(r["eval_top1"]), "likelihood": round(float(r["p_target"]), 4),
                "predicted": names[r["eval_pred"]]}
        shown["a"].append((pair, best, c))
        # the same identity reconstructed under the defended model (its own highest-likelihood restart)
        idx_b = [i for i, rb in enumerate(rows_b) if rb["identity"] == c]
        if idx_b:
            best_b = max(idx_b, key=lambda i: rows_b[i]["p_target"])
            rb = rows_b[best_b]
            _png(x_b[best_b], out / f"recon_defended_{c:02d}.png")
            pair["defended"] = {"recon": f"recon_defended_{c:02d}.png", "correct": bool(rb["eval_top1"]),
                                "likelihood": round(float(rb["p_target"]), 4), "predicted": names[rb["eval_pred"]]}
            shown["b"].append((pair["defended"], best_b, c))
        pairs.append(pair)
    for rec, tens, rws, key in ((a, t, rows, "a"), (b, tb_x, rows_b, "b")):
        if shown[key]:
            sel = [i for _, i, _ in shown[key]]
            verdicts = _dlib_shown(rec, tens["x"][sel].float(), [c for _, _, c in shown[key]], split,
                                   [rws[i] for i in sel], log)
            for (v, _, _), dv in zip(shown[key], verdicts):
                v["dlib"] = dv
    add_judged_faces(pairs, split, out)

    def acc(rec):
        return {"value": rec.metrics["natural_acc"], "lo": None, "hi": None}
    ma, mb = ev_a["metrics"], ev_b["metrics"]
    da, db = ev_a["extra_judges"]["dlib"]["attack_acc_top1"], ev_b["extra_judges"]["dlib"]["attack_acc_top1"]
    chance = 1 / ta.config["model"]["num_classes"]
    judge = ARCH_WORDS.get(ev_a["judge"]["arch"], ev_a["judge"]["arch"])
    arch = ARCH_WORDS.get(ta.config["model"]["arch"], ta.config["model"]["arch"])
    attack = a.config["attack"]["name"]
    ap = a.config["attack"]["params"]
    spec = {
        "title": f"{ATTACK_NAMES.get(attack, attack)} against a {arch} trained on {len(names)} ORL identities "
                 f"({ta.config['model']['img_size']} px): full model vs RoLSS",
        "caption": (f"The attacker never saw these people: its prior was trained on {len(split.public_names)} other "
                    f"identities. {ap['restarts']} restarts x {ap['iterations']} iterations per identity. Two "
                    f"judges: **dlib**, a face recogniser that never learned from these people (their private "
                    f"training photos are only the gallery it matches against), and the {judge} evaluation model "
                    f"**E**, trained on the same private images as the attacked model, so a reconstruction can "
                    f"fool both. Be the judge asks people. Chance is {100 * chance:.2g}% top-1 for both. Intervals: "
                    f"{ev_a.get('interval', '95% bootstrap over identities')}."),
        "attack": attack,
        "chance": round(chance, 4),
        "judges": {"lead": "dlib", "dlib": ev_a["extra_judges"]["dlib"].get("judge", "dlib"), "E": judge},
        "metrics": [
            {"label": "Natural acc. (full)", "value": acc(ta)},
            {"label": "Attack acc. top-1 by dlib (full)", "value": _rounded(da)},
            {"label": "Attack acc. top-1 by E (full)", "value": ma["attack_acc_top1"]},
            {"label": "Attack acc. top-5 by E (full)", "value": ma["attack_acc_top5"]},
            {"label": "Natural acc. (RoLSS)", "value": acc(tb)},
            {"label": "Attack acc. top-1 by dlib (RoLSS)", "value": _rounded(db)},
            {"label": "Attack acc. top-1 by E (RoLSS)", "value": mb["attack_acc_top1"]},
            {"label": "Attack acc. top-5 by E (RoLSS)", "value": mb["attack_acc_top5"]},
        ],
        # the paired difference full - RoLSS in top-1 attack accuracy over the same identities, per judge
        "paired": _paired(d_e),
        "paired_dlib": _paired(d_dlib),
        "pairs": pairs,
        "histograms": [
            {"label": label, "likelihood": [round(r["p_target"], 4) for r in ev["per_reconstruction"]],
             "correct": [bool(r["eval_top1"]) for r in ev["per_reconstruction"]],
             "correct_dlib": [bool(r["top1@dlib"]) for r in ev["per_reconstruction"]]}
            for label, ev in (("full", ev_a), ("RoLSS", ev_b))],
        # run ids carry their creation time: the settings that made the runs are recorded instead
        "settings": {"epochs": ta.config["train"]["epochs"], "seed": ta.config["train"]["seed"],
                     "attack": attack, "restarts": ap["restarts"], "iterations": ap["iterations"],
                     "attack_seed": ap["seed"]},
        "notes": "Built by scripts/make_demo.py from real runs. Reconstructions shown: each identity's restart "
                 "with the highest target likelihood, under each model.",
        "credit": "ORL faces: AT&T Laboratories Cambridge",
    }
    if layers:
        d = ws.get(layers).read_json("layers.json")
        short = [n.split("+")[0].removeprefix("body.") for n in d["layers"]]
        series = {"classification": [round(r["normalised"], 5) for r in d["classification"]]}
        if d.get("mi_final"):
            series["model inversion"] = [round(r["normalised"], 5) for r in d["mi_final"]]
        spec["fisher"] = {"layers": short, "series": series}
    (out / "demo.json").write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", help="workspace with the runs (default: a temporary one when building)")
    p.add_argument("--out", default=str(ROOT / "assets" / "demo"))
    p.add_argument("--from", dest="runs", nargs="+", metavar="RUN",
                   help="export existing runs: FULL_ATTACK DEFENDED_ATTACK [LAYERS_ANALYSIS]")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--attack", default=DEFAULT_ATTACK,
                   help=f"the attack when building from scratch (default {DEFAULT_ATTACK}: IF-GMI, the strongest "
                        "one-click attack; gmi = the earlier demo's); its classroom preset")
    p.add_argument("--restarts", type=int, default=None, help="default: the classroom preset's (5)")
    p.add_argument("--iterations", type=int, default=None, help="default: the classroom preset's (100)")
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
    from mivis.cli import USER_ERRORS
    try:
        if args.runs:
            if len(args.runs) not in (2, 3):
                p.error("--from takes FULL_ATTACK DEFENDED_ATTACK [LAYERS]")
            full, defended = args.runs[:2]
            layers = args.runs[2] if len(args.runs) == 3 else None
        else:
            full, defended, layers = build(ws, args.device, args.epochs, args.restarts, args.iterations,
                                           args.snapshots, args.attack)
        out = export(ws, full, defended, layers, Path(args.out))
        print(f"wrote {out}")
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
