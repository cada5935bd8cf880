"""Measure every attack on one target and write docs/measurements/attacks.md (+ a reconstruction grid).

Uses runs already in a workspace (target, evaluation model, priors) so the expensive parts are
trained once; every number in the report comes from the attack runs this script makes.

  python scripts/measure_attacks.py --workspace WS --target RUN --eval RUN --gmi-prior RUN \
      [--kedmi-prior RUN] [--plgmi-prior RUN] [--judge RUN] [--restarts 5] [--iterations N] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

ATTACK_ORDER = ("gmi", "kedmi", "lomma", "plgmi", "ppa", "whitebox")


def fmt(m: dict | None, pct: bool = True) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    s = 100 if pct else 1
    f = (lambda v: f"{v * s:.1f}") if pct else (lambda v: f"{v:.3g}")
    return f"{f(m['value'])} [{f(m['lo'])}, {f(m['hi'])}]"


def wait_for_plgmi(ws, target: str, minutes: float) -> str | None:
    t_end = time.monotonic() + minutes * 60
    while True:
        done = [r for r in ws.list(kind="prior", status="done") if r.config.get("target_run") == target
                and r.config.get("type") == "plgmi"]
        if done:
            return done[0].id
        running = [r for r in ws.list(kind="prior", status="running") if r.config.get("target_run") == target]
        if not running or time.monotonic() > t_end:
            return None
        time.sleep(20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--judge", action="append", default=[], help="extra judge run(s)")
    ap.add_argument("--gmi-prior", required=True)
    ap.add_argument("--kedmi-prior", default=None, help="default: the GMI prior (stated in the report)")
    ap.add_argument("--plgmi-prior", default=None, help="without it PLG-MI is skipped; 'wait' = the newest plgmi "
                    "prior of this target, waiting up to --wait-minutes for one being trained")
    ap.add_argument("--wait-minutes", type=float, default=60)
    ap.add_argument("--attacks", default=",".join(ATTACK_ORDER))
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=None, help="override every attack's iteration count")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lomma-students", default="efficientnet_b0")
    ap.add_argument("--out", default=str(ROOT / "docs" / "measurements" / "attacks.md"))
    ap.add_argument("--note", default="", help="a sentence on the setup for the report")
    ap.add_argument("--extra-run", action="append", default=[], help="also list this finished attack run (by its "
                    "name), e.g. a classroom-preset run")
    ap.add_argument("--from-runs", action="store_true", help="run nothing: report the finished 'measure <attack>' "
                    "runs of this target and evaluation model already in the workspace")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from mivis.attacks import ATTACKS, attack_run
    from mivis.evaluation import compare_runs
    from mivis.runs import Workspace
    ws = Workspace(a.workspace)
    target = ws.get(a.target)
    priors = {"gmi": a.gmi_prior, "kedmi": a.kedmi_prior or a.gmi_prior, "lomma": a.gmi_prior,
              "plgmi": a.plgmi_prior, "ppa": a.gmi_prior, "whitebox": None}
    results, grids = [], {}
    for name in [n.strip() for n in a.attacks.split(",") if n.strip()]:
        if a.from_runs:  # report finished runs made earlier by this script (e.g. when a run was cut short)
            done = [r for r in ws.list(kind="attack", status="done") if r.name == f"measure {name}"
                    and r.config["target_run"] == a.target and r.config["eval_run"] == a.eval]
            if done:
                results.append((name, done[0], None))
                grids[name] = done[0].file("reconstructions.png")
                if done[0].config.get("prior_run"):
                    priors[name] = done[0].config["prior_run"]
            continue
        if name == "plgmi" and a.plgmi_prior == "wait":
            priors["plgmi"] = wait_for_plgmi(ws, a.target, a.wait_minutes)
        if name == "plgmi" and not priors["plgmi"]:
            print("skipping plgmi: no conditional prior", flush=True)
            continue
        params = {"restarts": a.restarts, "device": a.device}
        if a.iterations:
            params["iterations"] = a.iterations
        if name == "lomma":
            params["students"] = a.lomma_students
        t0 = time.monotonic()
        rec = attack_run(name, a.target, priors[name], params=params, eval_run=a.eval, extra_judges=a.judge,
                         workspace=ws, name=f"measure {name}")
        wall = time.monotonic() - t0
        m = rec.metrics
        results.append((name, rec, wall))
        print(f"{name}: top-1 {fmt(m['attack_acc_top1'])} top-5 {fmt(m['attack_acc_top5'])} "
              f"({m['attack_seconds']:.0f} s)", flush=True)
        grids[name] = rec.file("reconstructions.png")
    for rid in a.extra_run:
        rec = ws.get(rid)
        results.append((rec.name or rid, rec, None))
        grids[(rec.name or rid).replace(" ", "-")] = rec.file("reconstructions.png")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img_dir = out.parent / "attacks"
    img_dir.mkdir(exist_ok=True)
    for name, path in grids.items():
        shutil.copyfile(path, img_dir / f"{name}.png")
    gmi = next((r for n, r, _ in results if n == "gmi"), None)
    mt = target.config["model"]
    ev = ws.get(a.eval)
    pr = ws.get(a.gmi_prior)
    plg = ws.get(priors["plgmi"]) if priors.get("plgmi") and priors["plgmi"] != "wait" else None
    lines = [
        "# Attack measurements",
        "",
        f"Produced by `scripts/measure_attacks.py` on {time.strftime('%Y-%m-%d')} "
        f"({platform.machine()}, torch {torch.__version__}, {a.threads} CPU threads"
        f"{', ' + torch.cuda.get_device_name() if torch.cuda.is_available() and a.device != 'cpu' else ''}).",
        "",
        f"- Target: `{target.id}`, {mt['arch']} at {mt['img_size']} px x {mt['in_chans']} channel(s), "
        f"{mt['num_classes']} private identities, natural accuracy {target.metrics.get('natural_acc', 0):.1%}; "
        f"defenses: {mt.get('defenses') or 'none'}.",
        f"- Evaluation model: `{ev.id}`, {ev.config['model']['arch']} (natural accuracy "
        f"{ev.metrics.get('natural_acc', 0):.1%}).",
        f"- GMI prior: `{pr.id}`, {pr.config.get('type')} GAN, "
        f"{pr.config.get('params', {}).get('iterations', pr.metrics.get('iterations', '?'))} iterations "
        f"({pr.metrics.get('train_seconds', '?')} s on {pr.metrics.get('device', '?')}).",
        f"- KEDMI attack prior: `{priors['kedmi']}`"
        + (" (the GMI prior: no KEDMI-specific GAN was trained for this report)" if not a.kedmi_prior else "") + ".",
        f"- Every attack: all {len(gmi.config['attack']['params']['identities']) if gmi else mt['num_classes']} "
        f"private identities x {gmi.config['attack']['params']['restarts'] if gmi else a.restarts} restarts, seed 0, "
        f"the attack's own defaults except the iterations listed in the table.",
        "- Intervals: 95% percentile bootstrap over identities (2,000 resamples; reconstructions of an identity "
        "stay together). Chance: top-1 " f"{100 / mt['num_classes']:.1f}%, top-5 {min(100, 500 / mt['num_classes']):.1f}%.",
    ]
    if plg is not None:
        lines.append(f"- PLG-MI prior: `{plg.id}`, conditional GAN on the public images pseudo-labelled by this "
                     f"target, {plg.config.get('params', {}).get('iterations')} iterations "
                     f"({plg.metrics.get('train_seconds')} s on {plg.metrics.get('device')}).")
    if a.note:
        lines += [f"- {a.note}"]
    lines += ["", "| attack | top-1 % | top-5 % | KNN dist | feature Frechet dist | p_T(y|x*) % | T top-1 % "
              "| iterations | attack s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, rec, wall in results:
        m = rec.metrics
        lines.append(f"| {name} ({rec.config['attack']['params']['restarts']} restarts) | {fmt(m['attack_acc_top1'])} | {fmt(m['attack_acc_top5'])} | "
                     f"{fmt(m['knn_dist'], False)} | {fmt(m['feature_frechet_distance'], False)} | "
                     f"{fmt(m['target_likelihood'])} | {fmt(m['target_success'])} | "
                     f"{rec.config['attack']['params']['iterations']} | {m['attack_seconds']:.0f} |")
    if a.judge:
        lines += ["", "Extra judges (top-1 %):", ""]
        for name, rec, _ in results:
            for jn, j in rec.metrics.get("extra_judges", {}).items():
                lines.append(f"- {name}, {jn}: {fmt(j['attack_acc_top1'])}")
    if gmi is not None and len(results) > 1:
        lines += ["", "Paired differences of top-1 attack accuracy against GMI (same identities; "
                  "'resolved' = the interval excludes 0):", ""]
        for name, rec, _ in results:
            if rec.id == gmi.id:
                continue
            d = compare_runs(ws, rec.id, gmi.id)
            lines.append(f"- {name} - gmi: {fmt(d)} pp, {d['verdict']}")
    lines += ["", "Reconstructions (each row: one real training face of the identity, then the attack's "
              "reconstructions; faces: AT&T Laboratories Cambridge):", ""]
    for name in grids:
        lines.append(f"- {name}: ![{name}](attacks/{name}.png)")
    lines += ["", "Run ids: " + ", ".join(f"{n} `{r.id}`" for n, r, _ in results), ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
    json.dump({n: {"run": r.id, "metrics": {k: v for k, v in r.metrics.items() if isinstance(v, dict)}}
               for n, r, _ in results}, open(out.with_suffix(".json"), "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
