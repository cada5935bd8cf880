"""Train a ResNet-18 target on the ORL default with each defense, through the real CLI, and
write the measured table (defense, flags, natural accuracy, train seconds, run id).

    python scripts/measure_defenses.py                  # 30 epochs each, default workspace
    python scripts/measure_defenses.py --epochs 2 --only none,rolss --out /tmp/t.md

Every number comes from a finished run in the registry (`mivis runs show ID`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name, CLI flags (after the common ones); "{public}" is the public pre-training run's id.
# ResNet-18 layer groups: 0 stem, 1-4 layer1, 5-9 layer2, 10-14 layer3, 15-19 layer4, 20 head.
DEFENSES = [
    ("none", []),
    ("RoLSS", ["--skips", "1,1,1,0"]),
    ("SSF (last stage 0.2)", ["--skips", "1,1,1,0.2"]),
    ("TTS (switch after {switch})", ["--defense", "tts", "--tts-switch-epoch", "{switch}"]),
    ("TL-DMI (layer4 + head train)", ["--init-run", "{public}", "--freeze", "15"]),
    ("TL-DMI (layer3-4 + head train)", ["--init-run", "{public}", "--freeze", "10"]),
    ("CALoR (r 40, 5 adapt. epochs)", ["--defense", "calor"]),
    ("BiDO-HSIC", ["--defense", "bido"]),
    ("MID (beta 0.003)", ["--defense", "mid"]),
    ("NegLS (-0.05)", ["--defense", "negls"]),
]
KEYS = {"none": "none", "rolss": "RoLSS", "ssf": "SSF", "tts": "TTS", "tldmi": "TL-DMI", "calor": "CALoR",
        "bido": "BiDO", "mid": "MID", "negls": "NegLS"}


def train(flags: list[str], common: list[str], env: dict, name: str) -> dict:
    cmd = [sys.executable, "-m", "mivis", "train", *common, *flags, "--name", name, "--json"]
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name}: mivis train failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    rec = json.loads(out.stdout)
    rec["wall"] = time.monotonic() - t0
    return rec


def table(rows: list[dict]) -> str:
    lines = ["| defense | CLI flags | natural accuracy | train s | trainable params | run |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        m = r["metrics"]
        lines.append(f"| {r['defense']} | `{r['flags']}` | {m['natural_acc']:.1%} | {m['train_seconds']:.0f} | "
                     f"{m['trainable_params']:,} | {r['id']} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per run (the machine is shared)")
    ap.add_argument("--workspace", default=None, help="default: the mivis default workspace")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(KEYS)}")
    ap.add_argument("--out", default=str(ROOT / "docs/measurements/defenses.md"))
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    if args.workspace:
        env["MIVIS_WORKSPACE"] = args.workspace
    common = ["--arch", "resnet18", "--epochs", str(args.epochs), "--seed", str(args.seed), "--device", "cpu"]
    wanted = [KEYS[k.strip()] for k in args.only.split(",") if k.strip()] or None
    todo = [(n, f) for n, f in DEFENSES if wanted is None or any(n.startswith(w) for w in wanted)]

    public = None
    if any("{public}" in f for _, f in todo):
        rec = train([], [*common, "--role", "public"], env, "measure: public pre-training")
        public = rec["id"]
        print(f"public pre-training {public}: held-out accuracy {rec['metrics']['natural_acc']:.1%} "
              f"({rec['metrics']['train_seconds']:.0f} s)", flush=True)
    rows = []
    for name, flags in todo:
        switch = str(min(5, args.epochs - 1))  # the paper's M = 5 (of 100); clamped for short smoke runs
        flags = [public if f == "{public}" else switch if f == "{switch}" else f for f in flags]
        name = name.replace("{switch}", switch)
        rec = train(flags, common, env, f"measure: {name}")
        rows.append({"defense": name, "flags": " ".join(flags) or "(none)", **rec})
        m = rec["metrics"]
        print(f"{name:34s} {m['natural_acc']:6.1%}  {m['train_seconds']:5.0f} s  run {rec['id']}", flush=True)

    head = (f"# Defenses on the ORL default: natural accuracy of a ResNet-18 target\n\n"
            f"Produced by `python scripts/measure_defenses.py` ({time.strftime('%Y-%m-%d')}): each row is one "
            f"`python -m mivis train --arch resnet18 --epochs {args.epochs} --seed {args.seed} --device cpu` "
            f"run with the flags shown, on the default data (ORL, 20 private identities, 64x64 grayscale, "
            f"7 train + 3 held-out images each, so accuracy moves in steps of 1/60 = 1.7 pp). "
            f"One seed: differences of a few points are within seed noise. "
            f"CPU: {platform.processor() or platform.machine()}, {args.threads} thread(s) per run, "
            f"on a 2-core machine shared with other jobs, so seconds are indicative only.\n\n")
    if public:
        head += (f"TL-DMI rows fine-tune public pre-training run {public} (20 public identities, "
                 f"{args.epochs} epochs). `--freeze k` freezes the first k of ResNet-18's 21 layer groups "
                 f"(0 stem, 1-4 layer1, 5-9 layer2, 10-14 layer3, 15-19 layer4, 20 head). CALoR adds 5 "
                 f"confidence-adaptation epochs at lr x 0.05 after the main schedule.\n\n")
    text = head + table(rows) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print("\n" + table(rows))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
