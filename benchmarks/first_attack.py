"""The first classroom attack on a fresh workspace: shipped models vs training them, in the same run.

Each path runs the README's commands in fresh processes on an empty workspace and times them:
  shipped   python -m mivis classroom setup                  (register the shipped target, judge, prior)
            python -m mivis attack --attack ifgmi --preset classroom ...  (the Attack page's one click: IF-GMI,
                                                     20 ORL identities x 5 restarts, 32 px)
  trained   python -m mivis train (the classroom target), python -m mivis train (its VGG-11 judge),
            python -m mivis prior import orl32-gmi, then the same attack
and prints each phase, the time to the first finished attack on each path and their ratio. The attack's
own evaluation includes the independent dlib judge when it is installed (`--no-dlib` leaves it out).

  python benchmarks/first_attack.py              # both paths
  python benchmarks/first_attack.py --shipped-only

Writes JSON to benchmarks/results/ with the machine and the other programs' load at the start.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mivis.attacks.presets import ONE_CLICK  # noqa: E402  (the attack the Attack page launches in one click)


def mivis(ws: Path, *args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mivis", "--workspace", str(ws), *args], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if out.returncode != 0:
        raise SystemExit(f"`mivis {' '.join(args)}` failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0, out.stdout


def run_id(stdout: str, key: str) -> str:
    return json.loads(stdout[stdout.index("{"):])[key]


def attack(ws: Path, target: str, dlib: bool) -> float:
    s, _ = mivis(ws, "attack", "--attack", ONE_CLICK, "--target", target, "--preset", "classroom",
                 *([] if dlib else ["--no-dlib"]))
    return s


def shipped(ws: Path, dlib: bool) -> dict:
    s_setup, out = mivis(ws, "classroom", "setup")
    s_attack = attack(ws, run_id(out, "target"), dlib)
    return {"setup_s": s_setup, "attack_s": s_attack, "first_attack_s": s_setup + s_attack}


def trained(ws: Path, dlib: bool) -> dict:
    from mivis.classroom import CLASSROOM_DATA, CLASSROOM_JUDGE, CLASSROOM_TARGET

    def flags(train: dict) -> list[str]:
        return [f for k, v in {**train, "image_size": CLASSROOM_DATA["image_size"]}.items()
                for f in (f"--{k.replace('_', '-')}", str(v))]
    s_t, out = mivis(ws, "train", "--role", "target", "--json", *flags(CLASSROOM_TARGET))
    target = run_id(out, "id")
    s_j, _ = mivis(ws, "train", "--role", "eval", "--json", *flags(CLASSROOM_JUDGE))
    s_p, _ = mivis(ws, "prior", "import", "orl32-gmi")
    s_attack = attack(ws, target, dlib)
    return {"train_target_s": s_t, "train_judge_s": s_j, "prior_import_s": s_p, "attack_s": s_attack,
            "first_attack_s": s_t + s_j + s_p + s_attack}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shipped-only", action="store_true")
    ap.add_argument("--no-dlib", action="store_true", help="leave the dlib judge out of the attack's evaluation")
    a = ap.parse_args()
    from mivis.evaluation.dlib_judge import available
    from mivis.threads import measure_load
    dlib = available() and not a.no_dlib
    before = measure_load(1.0)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["shipped"] = shipped(Path(tmp) / "shipped", dlib)
        print("shipped: " + ", ".join(f"{k} {v:.1f} s" for k, v in rows["shipped"].items()), flush=True)
        if not a.shipped_only:
            rows["trained"] = trained(Path(tmp) / "trained", dlib)
            print("trained: " + ", ".join(f"{k} {v:.1f} s" for k, v in rows["trained"].items()), flush=True)
    if "trained" in rows:
        print(f"first attack with the shipped models is {rows['trained']['first_attack_s'] / rows['shipped']['first_attack_s']:.1f}x "
              f"sooner than training them first")
    print(f"other programs' load at the start: {before.others_busy:.2f} core(s) of {before.cores}; dlib judge: {dlib}")
    out = {"benchmark": "first_attack", "dlib": dlib, "cores": before.cores,
           "other_load_at_start_cores": round(before.others_busy, 2), "machine": platform.platform(),
           "python": platform.python_version(), "rows": rows}
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    path = res / f"first_attack-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
