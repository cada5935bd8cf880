"""`mivis runs`: list, show and delete runs in the registry."""
from __future__ import annotations

import datetime as dt

from .. import votes  # noqa: F401  (registers its delete guard: a run with class votes goes only with --cascade)
from ._common import print_json, table, workspace


def register(sub) -> None:
    p = sub.add_parser("runs", help="list, show or delete runs")
    s = p.add_subparsers(dest="runs_cmd", required=True, metavar="ACTION")
    q = s.add_parser("list", help="list runs, newest first")
    q.add_argument("--kind", help="only runs of this kind (target, eval, public, prior, attack, ...)")
    q.add_argument("--status", help="only runs with this status (running, done, failed, cancelled, interrupted)")
    q.set_defaults(func=list_runs)
    q = s.add_parser("show", help="show one run's record as JSON")
    q.add_argument("run_id")
    q.set_defaults(func=show)
    q = s.add_parser("delete", help="delete a run and its files (refused while a queued or running job needs it)")
    q.add_argument("run_id")
    q.add_argument("--cascade", action="store_true",
                   help="also delete every run made from it and the class's votes on it (needed when finished runs "
                        "were made from it or it has votes from Be the judge)")
    q.set_defaults(func=delete)


def _summary(r) -> str:
    if r.damage:
        return "DAMAGED: " + "; ".join(r.damage)
    out = []
    for k in ("natural_acc", "attack_acc_top1", "attack_acc_top5"):
        v = r.metrics.get(k)
        v = v.get("value") if isinstance(v, dict) else v
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(f"{k}={v:.3f}")
    return " ".join(out)


def _when(t: float) -> str:
    try:
        return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError, OSError):
        return "?"


def list_runs(args) -> int:
    rows = []
    for r in workspace(args).list(kind=args.kind, status=args.status):
        rows.append([r.id, r.kind, r.status, _when(r.created), r.name, _summary(r)])
    print(table(rows, ["id", "kind", "status", "created", "name", "metrics"]) if rows else "no runs")
    return 0


def show(args) -> int:
    r = workspace(args, create=False).get(args.run_id, damaged=True)
    d = dict(r.__dict__)
    d["dir"] = str(r.dir)
    print_json(d)
    return 0


def delete(args) -> int:
    from ..runs import valid_run_id
    ids = workspace(args, create=False).delete(args.run_id, cascade=args.cascade)
    if not valid_run_id(args.run_id):
        print(f"removed the registry row {args.run_id!r} (not a valid run id: no file was touched)")
    else:
        print("deleted " + ", ".join(ids))
    return 0
