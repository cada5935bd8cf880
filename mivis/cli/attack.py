"""`mivis attack`: invert a target with one of the registered attacks; evaluation is stored with it."""
from __future__ import annotations

import argparse

from ._common import console_reporter, given_for, print_json, workspace


def _union():
    from ..attacks import ATTACKS
    out = {}
    for e in ATTACKS.entries():
        for p in e.params:
            out.setdefault(p.name, []).append((e.name, p))
    return out


def register(sub) -> None:
    from ..attacks import ATTACKS
    from ..attacks.presets import PRESETS
    p = sub.add_parser("attack", help="run a model-inversion attack on a target run (evaluated and stored)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="attacks: " + "; ".join(f"{e.name}: {e.help}" for e in ATTACKS.entries()))
    p.add_argument("--attack", default="gmi", choices=ATTACKS.names(), help="which attack (default: gmi)")
    p.add_argument("--target", required=True, help="target run id")
    p.add_argument("--prior", default=None, help="prior run id or shipped prior name (default: a prior in the "
                   "workspace or assets/priors/ that fits the target)")
    p.add_argument("--eval", dest="eval_run", default=None, help="evaluation model run (default: the newest "
                   "eval run with another architecture on the same split)")
    p.add_argument("--judge", action="append", default=[], help="extra evaluation model run (repeatable), "
                   "e.g. another family or one trained on lighting-normalised images")
    p.add_argument("--dlib", action=argparse.BooleanOptionalAction, default=None,
                   help="judge with dlib's face embedding too (default: when it is installed; --no-dlib: never)")
    p.add_argument("--preset", choices=list(PRESETS), default=None, help="classroom (CPU, < 1 min on ORL 32 px), "
                   "paper (5 restarts, paper iterations), gpu (paper + torch.compile with CUDA graphs)")
    p.add_argument("--estimate", action="store_true", help="only print the estimated run time (a few timed steps)")
    p.add_argument("--name", default="", help="a label for the run")
    p.add_argument("--json", action="store_true", help="print the finished run as JSON")
    g = p.add_argument_group("attack parameters (defaults depend on the attack)")
    for name, owners in _union().items():
        prm = owners[0][1]
        vals = {str(o.default) for _, o in owners}
        defaults = vals.pop() if len(vals) == 1 else ", ".join(f"{a}={o.default}" for a, o in owners)
        only = "" if len(owners) == len(ATTACKS) else f" [{'/'.join(a for a, _ in owners)}]"
        g.add_argument(prm.flag, dest="a_" + name, default=None, metavar=name.upper(),
                       help=f"{prm.help}{only} (default: {defaults}; {prm.allowed()})")
    p.set_defaults(func=run)


def _params(args) -> dict:
    from ..attacks import ATTACKS
    return given_for(args, _union(), ATTACKS.get(args.attack), dest_prefix="a_", what=f"the {args.attack} attack")


def _prior(args, ws) -> str | None:
    from ..attacks import ATTACKS
    from ..attacks.context import check_target, pick_prior
    need = ATTACKS.get(args.attack).meta["prior"]
    if args.prior:
        if ws.exists(args.prior):
            return args.prior
        from ..priors import import_prior
        return import_prior(args.prior, ws).id
    if need == "none":
        return None
    return pick_prior(ws, check_target(ws, args.target), need)


def run(args) -> int:
    from ..attacks import attack_run, estimate_seconds
    from ..attacks.presets import apply_preset
    ws = workspace(args)
    params = apply_preset(args.preset, args.attack, _params(args))
    prior = _prior(args, ws)
    if args.estimate:
        s = estimate_seconds(args.attack, args.target, prior, params=params, workspace=ws)
        print(f"estimated optimisation time: {s:.1f} s")
        return 0
    rec = attack_run(args.attack, args.target, prior, params=params, eval_run=args.eval_run,
                     extra_judges=args.judge, dlib=args.dlib, workspace=ws, reporter=console_reporter(),
                     name=args.name)
    if args.json:
        print_json({"id": rec.id, "metrics": rec.metrics, "config": rec.config})
        return 0
    m = rec.metrics
    print(f"run {rec.id}: {args.attack}, {m['n_reconstructions']} reconstructions in {m['attack_seconds']:.1f} s "
          f"on {m['device']}")
    from .evaluate import metric_lines
    print(metric_lines(m))
    print(f"images: {rec.dir / 'reconstructions.png'}")
    return 0
