"""How far is the posterior mean's ranking from the judge's own ranking of its pool? A DIAGNOSTIC using the judges.

    python scripts/measure_pmean_ranking.py --workspace WS [--seeds 1,2,3] [--pool 20000] [--top 10,100]
                                            [--out docs/measurements/pmean_ranking.json]

The posterior mean (`--attack pmean`) averages, per identity, the top k samples of a pool drawn from the
shipped 32 px GMI prior, ranked by the target's log p_T(c|x). Here the same pool is also ranked by E's
log p_E(c|x) (a classifier trained on the same private images) and by dlib's distance to the identity's
nearest private training image (the judge itself: an oracle no attacker has). Each ranking's top-k average
is judged by E and by dlib. The dlib-ranked average bounds what any ranking of this pool can show dlib with
k samples; its best single sample is picked by the judge that then scores it, so it is not a measure of
anything but the pool's size. Nothing here is an attack.

The pools are this script's own seeded draws (seed s draws pool 9000 + s), not the attack's. dlib embeds
every sample of every pool: 15-17 min a pool of 20,000 on a 2-core AMD EPYC VM (about 0.09 s an image a
core), 47 min for the default three. Prints and writes top-1 under E and dlib per ranking and k, pooled over the seeds (95%
bootstrap over identities), and the paired difference of each ranking against the target's.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import cpu_model  # noqa: E402
from measure_leak import finish, paired, paired_words, pooled  # noqa: E402
from measure_oracle_start import judged_rows  # noqa: E402
from measure_posterior_mean import dlib_closeness  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

CHUNK = 1000  # samples per forward pass


def draw_pool(G, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(9000 + seed)
    with torch.no_grad():
        return torch.cat([G(torch.randn(min(CHUNK, n - i), G.z_dim, generator=g)).clamp(-1, 1)
                          for i in range(0, n, CHUNK)])


def log_probs(score, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([F.log_softmax(score(x[i:i + CHUNK]), 1) for i in range(0, len(x), CHUNK)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--pool", type=int, default=20000, help="samples per pool (the classroom preset's pmean pool)")
    ap.add_argument("--top", default="10,100", help="k values: how many top samples each average takes")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    from mivis.classroom import import_classroom
    from mivis.data import load_split
    from mivis.evaluation.judges import load_judge
    from mivis.priors import import_prior, load_prior
    from mivis.runs import Workspace
    from mivis.train import load_classifier
    ws = Workspace(a.workspace)
    runs = import_classroom(ws)
    G = load_prior(ws, import_prior("orl32-gmi", ws).id).G.eval().requires_grad_(False)
    target, _ = load_classifier(ws, runs["target"], torch.device("cpu"))
    target.eval().requires_grad_(False)
    judge = load_judge(ws, runs["eval"], ws.get(runs["target"]), torch.device("cpu"))
    split = load_split(ws.get(runs["target"]).config["data"])
    ids = torch.arange(split.num_classes)
    seeds, ks = [int(s) for s in a.seeds.split(",")], [int(k) for k in a.top.split(",")]
    rows: dict[str, list[dict]] = {}
    per_seed = []
    for s in seeds:
        t0 = time.monotonic()
        x = draw_pool(G, a.pool, s)
        scores = {"target": log_probs(target, x), "E": log_probs(lambda b: judge.score(b)[0], x),
                  "dlib (oracle)": dlib_closeness(x, split)}
        for name, sc in scores.items():
            top = sc.topk(max(ks), 0).indices  # (k, classes), best first
            for k in ks:
                avg = torch.stack([x[top[:k, c]].mean(0) for c in ids.tolist()])
                rows.setdefault(f"{name}, top {k} average", []).extend(
                    judged_rows(judge, split, avg, ids))
        best = scores["dlib (oracle)"].argmax(0)
        rows.setdefault("dlib (oracle), its single best sample", []).extend(
            judged_rows(judge, split, x[best], ids))
        per_seed.append({"seed": s, "seconds": round(time.monotonic() - t0, 1)})
        print(f"pool {s} done in {per_seed[-1]['seconds']:.0f} s", flush=True)
    result = {"machine": f"{cpu_model()}, {os.cpu_count()} cores", "pool": a.pool, "top": ks,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seeds": seeds, "per_seed": per_seed,
              "rankings": {}}
    for name, r in rows.items():
        e, d = pooled(r, "eval_top1"), pooled(r, "top1@dlib")
        result["rankings"][name] = {"E": e, "dlib": d, "n": len(r)}
        print(f"{name}: E {e['value']:.1%} [{e['lo']:.1%}, {e['hi']:.1%}], dlib {d['value']:.1%} "
              f"[{d['lo']:.1%}, {d['hi']:.1%}] ({len(r)} images)")
    for k in ks:
        base = rows[f"target, top {k} average"]
        for other in ("E", "dlib (oracle)"):
            label = f"{other} - target, top {k} average"
            v = {"E": paired(rows[f"{other}, top {k} average"], base, "eval_top1"),
                 "dlib": paired(rows[f"{other}, top {k} average"], base, "top1@dlib")}
            result[label] = v
            print(paired_words(label, v))
    return finish(result, a.out)


if __name__ == "__main__":
    sys.exit(main())
