"""`mivis evaluate`: show an attack run's metrics, compare two runs (paired), Delta, re-judge."""
from __future__ import annotations

import sys
from pathlib import Path

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
    from ..data import DATA_PARAMS
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
    q.add_argument("--by", choices=("E", "dlib"), default=None, help="the judge of the top-1 attack accuracy "
                   "(sets --metric): E, the evaluation model, or dlib, the independent face embedding")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=compare)
    q = s.add_parser("delta", help="Delta = AttAcc drop / Acc drop of a defended attack run vs an undefended one")
    q.add_argument("defended_run")
    q.add_argument("reference_run")
    q.add_argument("--by", choices=("E", "dlib"), default="E", help="the judge of the attack accuracies")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=delta_cmd)
    q = s.add_parser("rejudge", help="evaluate finished attack runs' reconstructions again with other judges; "
                     "`rejudge --dlib` alone adds dlib's verdicts to every attack run that lacks them")
    q.add_argument("run_ids", nargs="*", metavar="RUN", help="attack runs (with --dlib alone: default all)")
    q.add_argument("--eval", dest="eval_run", default=None, help="primary evaluation model run")
    q.add_argument("--judge", action="append", default=[], help="extra evaluation model run (repeatable)")
    q.add_argument("--dlib", action="store_true", help="add dlib's face embedding as a judge (installed by "
                   "requirements-judge.txt); alone, E's stored verdicts are kept and only dlib judges")
    q.add_argument("--force", action="store_true", help="with --dlib alone: judge runs that already have dlib too")
    q.set_defaults(func=rejudge)
    q = s.add_parser("survival", help="which effects a study report resolves under E hold in its method-v2 "
                     "reruns, under E and under dlib; written into the report (a section below its title)")
    q.add_argument("report", help="the earlier report's markdown (its findings.json lies beside it)")
    q.add_argument("reruns", nargs="+", metavar="RERUN_JSON", help="the reruns' findings.json files, in the "
                   "order to search them")
    q.set_defaults(func=survival)
    q = s.add_parser("verify-dlib", help="the dlib judge on held-out private images (1-NN against the training "
                     "images) next to an evaluation model's natural accuracy")
    q.add_argument("--eval", dest="eval_run", default=None, help="an evaluation model run: its data split is used "
                   "and its held-out accuracy shown beside dlib's (default: the data flags)")
    q.add_argument("--json", action="store_true")
    DATA_PARAMS.add_arguments(q.add_argument_group("data"))
    q.set_defaults(func=verify_dlib)
    q = s.add_parser("train-judge", help="train an evaluation model on lighting-normalised (histogram-equalised) "
                     "faces, to use as an extra judge (--judge)")
    from ..train import TRAIN_PARAMS
    TRAIN_PARAMS.add_arguments(q.add_argument_group("training"))
    DATA_PARAMS.add_arguments(q.add_argument_group("data"))
    q.set_defaults(func=train_judge)


def show(args) -> int:
    from ..evaluation import load_evaluation
    from ..evaluation.agreement import e_false_positive
    from ..votes import judges
    ws = workspace(args, create=False)
    rec, ev = load_evaluation(ws, args.run_id)
    agree = judges(ws, rec.id, ev)
    if args.json:
        print_json(ev["metrics"] | {"extra_judges": ev["extra_judges"], "judge": ev["judge"], "judges": agree})
        return 0
    print(f"{rec.id}: judged by {ev['judge']['arch']} ({ev['judge']['run']})")
    print(metric_lines(rec.metrics))
    if len(agree["judges"]) > 1:
        print(judge_lines(agree))
    for other, m in e_false_positive(agree).items():
        print(f"E's false-positive share against {other}: {_pct(m)} of E's 'correct' verdicts are wrong for "
              f"{other} (per {m['unit']}, 95% CI over identities)")
    return 0


def judge_lines(agree: dict) -> str:
    """The agreement table: every pair of judges (E, dlib, humans) on the same reconstructions or votes."""
    rows = [[f"{p['a']} vs {p['b']}", p["unit"], p["n"], _pct(p["agree"]), p["both_correct"], p["only_a"],
             p["only_b"], p["both_wrong"]] for p in agree["pairs"]]
    return table(rows, ["judges", "per", "n", "agree (95% CI)", "both right", "only first", "only second",
                        "both wrong"])


def compare(args) -> int:
    from ..evaluation import compare_runs
    from ..evaluation.compare import JUDGE_METRIC
    metric = JUDGE_METRIC[args.by] if args.by else args.metric
    out = compare_runs(workspace(args, create=False), args.run_a, args.run_b, metric)
    if args.json:
        print_json(out)
    else:
        _sides(("A", out["a_side"]), ("B", out["b_side"]), out["warnings"])
        print(f"{metric}: A - B = {_fmt(out['value'])} [{_fmt(out['lo'])}, {_fmt(out['hi'])}] over "
              f"{out['n']} identities: {out['verdict']}"
              + ("" if out["same_starting_latents"] else " (different starting latents)"))
    return 0


def delta_cmd(args) -> int:
    from ..evaluation import delta
    from ..evaluation.compare import JUDGE_METRIC
    out = delta(workspace(args, create=False), args.defended_run, args.reference_run, JUDGE_METRIC[args.by])
    if not args.json:
        _sides(("defended", out["defended_side"]), ("reference", out["reference_side"]), out["warnings"])
    if args.json:
        print_json(out)
    elif out["value"] is None:
        print(f"Delta undefined: {out['note']}")
    else:
        print(f"Delta = {_fmt(out['value'])} [{_fmt(out['lo'])}, {_fmt(out['hi'])}] (AttAcc drop "
              f"{out['attack_acc_drop']:.3f} / Acc drop {out['acc_drop']:.3f})")
    return 0


def _sides(a, b, warns) -> None:
    """Which runs a comparison compares (with their targets' natural accuracy), and its warnings (stderr)."""
    from ..evaluation.sides import words
    from ._common import printable
    for label, s in (a, b):
        print(printable(f"{label} = {words(s)}"))
    for w in warns:
        print(f"warning: {w}", file=sys.stderr)


def rejudge(args) -> int:
    from ..attacks.run import reevaluate
    from ..params import ParamError
    ws = workspace(args)
    if args.dlib and not args.eval_run and not args.judge:
        return rejudge_dlib(ws, args.run_ids, args.force)
    if len(args.run_ids) != 1:
        raise ParamError("rejudge with --eval or --judge takes exactly one attack run id")
    reevaluate(ws, args.run_ids[0], args.eval_run, args.judge, args.dlib or None)  # dlib kept when installed
    print(metric_lines(ws.get(args.run_ids[0]).metrics))
    return 0


def rejudge_dlib(ws, run_ids: list[str], force: bool) -> int:
    """dlib's verdicts for the given attack runs (default: every finished one), E's kept; prints both."""
    from ..evaluation import dlib_judge
    dlib_judge.check_available()
    from . import USER_ERRORS
    ids = run_ids or [r.id for r in ws.list(kind="attack", status="done")]
    rows, failed = [], []
    for rid in ids:
        try:
            rec = ws.get(rid)
            before = dlib_judge.NAME in (rec.metrics.get("extra_judges") or {})
            m = dlib_judge.add_to_run(ws, rid, force=force)
        except USER_ERRORS as e:  # one run's missing data or damaged files must not stop the others
            failed.append(rid)
            print(f"{rid}: not judged: {e}", flush=True)
            continue
        e = ws.get(rid).metrics.get("attack_acc_top1") or {}
        rows.append([rid, _pct(e), _pct(m), "kept" if before and not force else "judged"])
        print(f"{rid}: E {_pct(e)} · dlib {_pct(m)}", flush=True)
    if not ids:
        print("no finished attack runs in this workspace")
    if rows:
        print(table(rows, ["attack run", "top-1 under E", "top-1 under dlib", "dlib"]))
    if failed:
        print(f"{len(failed)} of {len(ids)} runs were not judged (see above)", file=sys.stderr)
        return 2
    return 0


def _pct(m) -> str:
    if not isinstance(m, dict) or m.get("value") is None:
        return "n/a"
    ci = "" if m.get("lo") is None else f" [{100 * m['lo']:.0f}, {100 * m['hi']:.0f}]"
    return f"{100 * m['value']:.0f}%{ci}"


def verify_dlib(args) -> int:
    from ..data import DATA_PARAMS, load_split
    from ..evaluation.dlib_judge import check_available, heldout_accuracy
    check_available()
    ws = workspace(args)
    e = None
    if args.eval_run:
        from ..train import classifier_config
        rec = ws.get(args.eval_run)
        classifier_config(rec)  # a hand-edited config: DamagedRun naming the run, not a KeyError
        data, e = rec.config["data"], rec.metrics.get("natural_acc")
    else:
        data = DATA_PARAMS.from_namespace(args)
    split = load_split(data)
    d = heldout_accuracy(split)
    out = {"data": split.config, "held_out_images": len(split.test), "identities": split.num_classes,
           "dlib_top1": d, "eval_run": args.eval_run, "eval_natural_acc": e}
    if args.json:
        print_json(out)
    else:
        print(f"{len(split.test)} held-out images of {split.num_classes} private identities "
              f"({split.config['dataset']}, {split.config['image_size']} px): dlib 1-NN top-1 {_pct(d)}"
              + ("" if e is None else f"; evaluation model {args.eval_run}: {100 * e:.1f}%"))
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


def survival(args) -> int:
    from ..params import ParamError
    from ..report.versions import write_survival
    report = Path(args.report)
    if not report.is_file():
        raise ParamError(f"survival: no report file {args.report!r}")
    old = report.with_suffix(".json")
    for p in (old, *map(Path, args.reruns)):
        if not p.is_file():
            raise ParamError(f"survival: no report file {p}")
    reruns = {str(Path(p).parent): Path(p) for p in args.reruns}
    print(write_survival(report, old, reruns))
    return 0
