"""Does the attack's objective keep a person it starts on? A DIAGNOSTIC that uses the private images.

    python scripts/measure_oracle_start.py --workspace WS [--seeds 1,2,3] [--per-identity 5] [--prior P] [--params JSON]
                                           [--out docs/measurements/oracle_start.json]

The one-click attack (IF-GMI, classroom preset) normally starts from PPA's initial selection: the pool
latents the target finds most confident. Here the same attack, with the same seed, steps and transforms,
starts instead from each private training image's projection into the shipped 32 px GMI prior (z
minimising pixel MSE, 2 starts x 200 Adam steps, the `prior ceiling` recipe), one restart per image. If the
target's objective pointed at the person, the reconstructions would stay where dlib recognises them (the
projections) or get closer; if it does not, they leave even that start. The projections are an oracle no
attacker has (they need the private images): this measures the objective, it is not an attack.

Prints and writes, per start (projections before any attack step, oracle-start IF-GMI, the usual IF-GMI),
top-1 under E and dlib pooled over the seeds (95% bootstrap over identities), and the paired differences.
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
from measure_leak import finish, paired, paired_words, per_reconstruction, pooled  # noqa: E402

import torch  # noqa: E402

STEPS, STARTS, LR = 200, 2, 0.05  # the prior ceiling's projection (mivis/analysis/ceiling.py defaults)


def project_latents(G, x: torch.Tensor, seed: int) -> torch.Tensor:
    """z (N, z_dim) whose G(z) is closest in pixel MSE to each image, best of STARTS Adam runs."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(STARTS * len(x), G.z_dim, generator=g).requires_grad_(True)
    target = x.repeat(STARTS, 1, 1, 1)
    opt = torch.optim.Adam([z], lr=LR)
    for _ in range(STEPS):
        mse = (G(z) - target).pow(2).flatten(1).mean(1)
        opt.zero_grad()
        mse.sum().backward()
        opt.step()
    with torch.no_grad():
        mse = (G(z) - target).pow(2).flatten(1).mean(1).view(STARTS, len(x))
        best = mse.argmin(0)
        return z.detach().view(STARTS, len(x), -1)[best, torch.arange(len(x))]


def judged_rows(judge, split, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """E's (a loaded judge, mivis.evaluation.judges.load_judge) and dlib's verdict per image, in the attack
    evaluation's row format."""
    from mivis.evaluation import dlib_judge
    e = (judge.score(x)[0].argmax(1) == y).tolist()
    d = dlib_judge.dlib_verdicts(x, y, split)["top1"].tolist()
    return [{"identity": int(c), "eval_top1": bool(a), "top1@dlib": bool(b)} for c, a, b in zip(y.tolist(), e, d)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--per-identity", type=int, default=5, help="private training images (= restarts) per identity")
    ap.add_argument("--prior", default="orl32-gmi", help="a shipped prior's name or a prior run id in the workspace")
    ap.add_argument("--params", default="{}", help="IF-GMI parameters over the classroom preset, as JSON "
                    "(a PCA prior has one feature block: e.g. {\"stage_steps\": [70, 10], \"radius\": [0, 0.1]})")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    from mivis.attacks import attack_run
    from mivis.attacks.ppa import PPA
    from mivis.attacks.presets import apply_preset
    from mivis.classroom import import_classroom
    from mivis.data import load_split
    from mivis.evaluation.judges import load_judge
    from mivis.priors import import_prior, load_prior
    from mivis.runs import Workspace
    ws = Workspace(a.workspace)
    runs = import_classroom(ws)
    prior_id = a.prior if a.prior.startswith("prior-") else import_prior(a.prior, ws).id
    G = load_prior(ws, prior_id).G.eval().requires_grad_(False)
    split = load_split(ws.get(runs["target"]).config["data"])
    judge = load_judge(ws, runs["eval"], ws.get(runs["target"]), torch.device("cpu"))
    k = a.per_identity
    ids = list(range(split.num_classes))
    x = torch.cat([split.private_images(c)[:k] for c in ids])
    if len(x) != k * len(ids):
        raise SystemExit(f"--per-identity {k}: some identity has fewer private training images")
    seeds = [int(s) for s in a.seeds.split(",")]
    usual_init = PPA.init
    rows = {"projection": [], "oracle-start IF-GMI": [], "IF-GMI": []}
    per_seed = []
    for s in seeds:
        t0 = time.monotonic()
        z = project_latents(G, x, s)  # row c * k + r: identity c's r-th image
        with torch.no_grad():
            proj = G(z)
        y = torch.tensor(ids).repeat_interleave(k)
        rows["projection"] += judged_rows(judge, split, proj, y)

        def oracle_init(self, yy, restarts, seed, z=z):  # candidate r of identity c starts on its r-th image
            return {"z": z[yy.cpu() * k + restarts.cpu()].clone()}
        params = apply_preset("classroom", "ifgmi", {**json.loads(a.params), "seed": s, "restarts": k})
        try:
            PPA.init = oracle_init
            oracle = attack_run("ifgmi", runs["target"], prior_id, params=params, eval_run=runs["eval"], dlib=True,
                                workspace=ws, name=f"DIAGNOSTIC ifgmi from private projections seed {s}")
        finally:
            PPA.init = usual_init
        usual = attack_run("ifgmi", runs["target"], prior_id, params=params, eval_run=runs["eval"], dlib=True,
                           workspace=ws, name=f"ifgmi classroom seed {s} (beside the diagnostic)")
        rows["oracle-start IF-GMI"] += per_reconstruction(oracle)
        rows["IF-GMI"] += per_reconstruction(usual)
        per_seed.append({"seed": s, "oracle_run": oracle.id, "usual_run": usual.id,
                         "seconds": round(time.monotonic() - t0, 1)})
        print(f"seed {s} done in {per_seed[-1]['seconds']:.0f} s", flush=True)
    result = {"machine": f"{cpu_model()}, {os.cpu_count()} cores", "prior": a.prior, "params": json.loads(a.params),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seeds": seeds, "per_identity": k,
              "projection": {"steps": STEPS, "starts": STARTS, "lr": LR}, "per_seed": per_seed, "starts": {}}
    for name, r in rows.items():
        result["starts"][name] = {"E": pooled(r, "eval_top1"), "dlib": pooled(r, "top1@dlib"), "n": len(r)}
        e, d = result["starts"][name]["E"], result["starts"][name]["dlib"]
        print(f"{name}: E {e['value']:.1%} [{e['lo']:.1%}, {e['hi']:.1%}], dlib {d['value']:.1%} "
              f"[{d['lo']:.1%}, {d['hi']:.1%}] ({len(r)} images)")
    for a_, b_ in (("oracle-start IF-GMI", "projection"), ("oracle-start IF-GMI", "IF-GMI")):
        v = {"E": paired(rows[a_], rows[b_], "eval_top1"), "dlib": paired(rows[a_], rows[b_], "top1@dlib")}
        result[f"{a_} - {b_}"] = v
        print(paired_words(f"{a_} - {b_}", v))
    return finish(result, a.out)


if __name__ == "__main__":
    sys.exit(main())
