"""`mivis evaluate`: show an attack run's metrics, compare two runs (paired), Delta, re-judge."""
from __future__ import annotations

from ._common import print_json, table, workspace

SHOWN = ("attack_acc_top1", "attack_acc_top5", "knn_dist", "feature_frechet_distance", "target_likelihood",
         "target_success")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def metric_lines(m: dict) -> str:
    rows = [[k, _fmt(m[k]["value"]), f"[{_fmt(m[k]['lo'])}, {_fmt(m[k]['hi'])}]", m[k]["n"]]
            for k in SHOWN if isinstance(m.get(k), dict)]
    for name, j in (m.get("extra_judges") or {}).items():
        v = j["attack_acc_top1"]
        rows.append([f"attack_acc_top1@{name}", _fmt(v["value"]), f"[{_fmt(v['lo'])}, {_fmt(v['hi'])}]", v["n"]])
    return table(rows, ["metric", "value", "95% CI over identities", "identities"])


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="attack metrics with intervals, paired comparisons, Delta, re-judging")
    s = p.add_subparsers(dest="eval_cmd", required=True, metavar="ACTION")
    q = s.add_parser("show", help="an attack run's metrics with 95%% intervals")
    q.add_argument("run_id")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=show)
    q = s.add_parser("compare", help="paired difference A - B of a metric over the same identities")
    q.add_argument("run_a")
    q.add_argument("run_b")
    q.add_argument("--metric", default="attack_acc_top1")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=compare)
    q = s.add_parser("delta", help="Delta = AttAcc drop / Acc drop of a defended attack run vs an undefended one")
    q.add_argument("defended_run")
    q.add_argument("reference_run")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=delta_cmd)
    q = s.add_parser("rejudge", help="evaluate a finished attack run's reconstructions again with other judges")
    q.add_argument("run_id")
    q.add_argument("--eval", dest="eval_run", default=None, help="primary evaluation model run")
    q.add_argument("--judge", action="append", default=[], help="extra evaluation model run (repeatable)")
    q.add_argument("--dlib", action="store_true", help="add dlib's face embedding as a judge (if installed)")
    q.set_defaults(func=rejudge)
    q = s.add_parser("train-judge", help="train an evaluation model on lighting-normalised (histogram-equalised) "
                     "faces, to use as an extra judge (--judge)")
    from ..data import DATA_PARAMS
    from ..train import TRAIN_PARAMS
    TRAIN_PARAMS.add_arguments(q.add_argument_group("training"))
    DATA_PARAMS.add_arguments(q.add_argument_group("data"))
    q.set_defaults(func=train_judge)


def show(args) -> int:
    from ..evaluation import load_evaluation
    rec, ev = load_evaluation(workspace(args), args.run_id)
    if args.json:
        print_json(ev["metrics"] | {"extra_judges": ev["extra_judges"], "judge": ev["judge"]})
    else:
        print(f"{rec.id}: judged by {ev['judge']['arch']} ({ev['judge']['run']})")
        print(metric_lines(rec.metrics))
    return 0


def compare(args) -> int:
    from ..evaluation import compare_runs
    out = compare_runs(workspace(args), args.run_a, args.run_b, args.metric)
    if args.json:
        print_json(out)
    else:
        print(f"{args.metric}: A - B = {_fmt(out['value'])} [{_fmt(out['lo'])}, {_fmt(out['hi'])}] over "
              f"{out['n']} identities: {out['verdict']}"
              + ("" if out["same_starting_latents"] else " (different starting latents)"))
    return 0


def delta_cmd(args) -> int:
    from ..evaluation import delta
    out = delta(workspace(args), args.defended_run, args.reference_run)
    if args.json:
        print_json(out)
    elif out["value"] is None:
        print(f"Delta undefined: {out['note']}")
    else:
        print(f"Delta = {_fmt(out['value'])} [{_fmt(out['lo'])}, {_fmt(out['hi'])}] (AttAcc drop "
              f"{out['attack_acc_drop']:.3f} / Acc drop {out['acc_drop']:.3f})")
    return 0


def rejudge(args) -> int:
    from ..attacks.run import reevaluate
    ws = workspace(args)
    reevaluate(ws, args.run_id, args.eval_run, args.judge, args.dlib)
    print(metric_lines(ws.get(args.run_id).metrics))
    return 0


def train_judge(args) -> int:
    from ..data import DATA_PARAMS
    from ..evaluation.lighting import train_lighting_judge
    from ..train import TRAIN_PARAMS
    from ._common import console_reporter
    rec = train_lighting_judge(TRAIN_PARAMS.from_namespace(args), DATA_PARAMS.from_namespace(args),
                               workspace=workspace(args), reporter=console_reporter())
    print(f"run {rec.id}: lighting-normalised {rec.config['model']['arch']} judge, natural accuracy "
          f"{rec.metrics['natural_acc']:.1%} on equalised held-out images")
    return 0
