"""`mivis classroom`: the shipped classroom target and judge (set up a workspace, or rebuild the assets)."""
from __future__ import annotations

from ..classroom import ASSETS, export_classroom, import_classroom
from ._common import DefaultsFormatter, console_reporter, print_json, workspace


def register(sub) -> None:
    p = sub.add_parser("classroom", help="the classroom default: the shipped ResNet-18 target and VGG-11 judge "
                                         "(ORL 32 px) and the shipped 32 px prior", formatter_class=DefaultsFormatter)
    s = p.add_subparsers(dest="classroom_command", metavar="ACTION", required=True)
    q = s.add_parser("setup", help="register the shipped target, judge and prior in the workspace (seconds)",
                     formatter_class=DefaultsFormatter)
    q.set_defaults(func=_setup)
    q = s.add_parser("export", help="train the classroom target and judge (or reuse matching runs in the "
                                    "workspace) and write their float16 weights, configs and sha256 to --out",
                     formatter_class=DefaultsFormatter)
    q.add_argument("--out", default=str(ASSETS), help="folder to write")
    q.add_argument("--device", default="cpu", help="cpu or cuda")
    q.set_defaults(func=_export)


def _setup(args) -> int:
    from ..priors import import_prior, shipped_priors
    ws = workspace(args)
    ids = import_classroom(ws)
    prior = import_prior(next(n for n in shipped_priors() if "32" in n), ws)
    print_json({"target": ids["target"], "eval": ids["eval"], "prior": prior.id})
    return 0


def _export(args) -> int:
    info = export_classroom(args.out, workspace(args), console_reporter(), device=args.device)
    print_json({m["role"]: {"file": m["file"], "sha256": m["sha256"], "source_run": m["source_run"],
                            "natural_acc": m["trained_metrics"].get("natural_acc")} for m in info["models"]})
    return 0
