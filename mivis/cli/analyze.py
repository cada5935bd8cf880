"""`mivis analyze`: Fisher information, gradient flow, attributions and likelihood histograms."""
from __future__ import annotations

import numpy as np

from ..analysis import ATTRIBUTION_METHODS, LAYERS_PARAMS
from ._common import console_reporter, print_json, workspace


def register(sub) -> None:
    p = sub.add_parser("analyze", help="why defenses work: Fisher information, gradient flow, attributions")
    s = p.add_subparsers(dest="analyze_cmd", required=True, metavar="ANALYSIS")
    q = s.add_parser("layers", help="Fisher information per layer (classification vs MI, over attack "
                                    "iterations) and gradient flow per stage; stored as a run")
    q.add_argument("--target", required=True, help="target run id")
    q.add_argument("--attack", help="attack run id on that target (adds MI Fisher information and gradient flow)")
    LAYERS_PARAMS.add_arguments(q)
    q.set_defaults(func=layers)
    q = s.add_parser("histograms", help="target-likelihood histograms split by the evaluation verdict")
    q.add_argument("attack_runs", nargs="+")
    q.add_argument("--bins", type=int, default=20)
    q.set_defaults(func=histograms)
    q = s.add_parser("attributions", help="attribution maps for a reconstruction and a real face")
    q.add_argument("--attack", required=True)
    q.add_argument("--identity", type=int, required=True)
    q.add_argument("--method", choices=ATTRIBUTION_METHODS, default="integrated_gradients")
    q.add_argument("--out", help="write the maps and images as .npz here")
    q.set_defaults(func=attributions)


def layers(args) -> int:
    from ..analysis import layers_run
    rec = layers_run(args.target, args.attack, LAYERS_PARAMS.from_namespace(args), workspace=workspace(args),
                     reporter=console_reporter())
    data = __import__("json").loads(rec.file("layers.json").read_text())
    print(f"run {rec.id} ({rec.metrics['seconds']:.1f} s)")
    parts = [("classification", data["classification"])] + ([("mi_final", data["mi_final"])] if "mi_final" in data else [])
    header = "layer".ljust(34) + "".join(name.rjust(16) for name, _ in parts)
    print(header)
    for i, layer in enumerate(data["layers"]):
        print(layer[:33].ljust(34) + "".join(f"{rows[i]['normalised']:16.4f}" for _, rows in parts))
    for k, v in rec.metrics.items():
        if k.startswith("fi_"):
            print(f"{k}: {v:.3f} of normalised Fisher information in the first half of the layers")
    for flow in data.get("gradflow", []):
        stages = " ".join(f"{s['stage']}={s['grad_norm']:.3g}" + (f"(skip {s['skip_share']:.2f})"
                          if s["skip_share"] is not None else "") for s in flow["stages"])
        print(f"iteration {flow['iteration']}: latent grad {flow['latent_grad_norm']:.3g}; {stages}")
    return 0


def histograms(args) -> int:
    from ..analysis.runs_view import likelihood_histograms
    print_json(likelihood_histograms(workspace(args), args.attack_runs, args.bins))
    return 0


def attributions(args) -> int:
    from ..analysis.runs_view import attribution_pair
    out = attribution_pair(workspace(args), args.attack, args.identity, args.method)
    if args.out:
        np.savez(args.out, **{k: v for k, v in out.items() if isinstance(v, np.ndarray)})
        print(f"wrote {args.out}")
    for k in ("map_reconstruction", "map_real"):
        m = out[k]
        print(f"{k}: shape {m.shape}, min {m.min():.3g}, max {m.max():.3g}, |sum| {abs(m).sum():.3g}")
    return 0
