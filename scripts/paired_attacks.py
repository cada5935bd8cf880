"""Two attacks of one sweep compared on the same targets: attack A - attack B, paired over identities.

    python scripts/paired_attacks.py --workspace WS --sweep cpu-lomma --a lomma --b gmi [--out FILE.json]

For every defense label of the sweep, the trials of attack A and attack B on the same target runs (same
training seeds) are paired: top-1 under E and under dlib, A minus B, with a 95% bootstrap interval over
identities (an identity's reconstructions of every seed resampled together for both attacks), plus the
per-seed differences. `python -m mivis report` compares defenses within an attack; this compares attacks
within a defense.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--sweep", required=True)
    ap.add_argument("--a", required=True, help="attack name (the trials' `attack`)")
    ap.add_argument("--b", required=True)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    import numpy as np
    from mivis.evaluation.bootstrap import paired_difference
    from mivis.runs import Workspace
    from mivis.sweep.runner import load_summary
    ws = Workspace(args.workspace, create=False)
    rows: dict[tuple, dict] = {}
    for t in load_summary(ws, args.sweep)["trials"]:
        if t["complete"] and t["attack"] in (args.a, args.b):
            per = ws.get(t["runs"]["attack"]).read_json("evaluation.json")["per_reconstruction"]
            rows.setdefault((t["defense"], t["attack"]), {})[t["seed"], t["runs"]["target"]] = per
    result = {}
    for defense in sorted({d for d, _ in rows}):
        a, b = rows.get((defense, args.a), {}), rows.get((defense, args.b), {})
        shared = sorted(set(a) & set(b))
        if not shared:
            continue
        out = {"seeds": [s for s, _ in shared]}
        for key, judge in (("eval_top1", "E"), ("top1@dlib", "dlib")):
            va = [float(r[key]) for k in shared for r in a[k]]
            vb = [float(r[key]) for k in shared for r in b[k]]
            ia = [r["identity"] for k in shared for r in a[k]]
            ib = [r["identity"] for k in shared for r in b[k]]
            d = paired_difference(np.array(va), np.array(ia), np.array(vb), np.array(ib))
            d["per_seed"] = [float(np.mean([float(r[key]) for r in a[k]]) - np.mean([float(r[key]) for r in b[k]]))
                             for k in shared]
            out[judge] = d
            print(f"{defense}: {args.a} - {args.b} under {judge}: {d['value']:+.1%} [{d['lo']:+.1%}, {d['hi']:+.1%}]"
                  f" ({'resolved' if d['resolved'] else 'not resolved'}); per seed "
                  + ", ".join(f"{v:+.1%}" for v in d["per_seed"]))
        result[defense] = out
    if args.out:
        Path(args.out).write_text(json.dumps({"sweep": args.sweep, "a": args.a, "b": args.b, "by_defense": result},
                                             indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
