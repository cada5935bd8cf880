"""`mivis runs`: list, show and delete runs in the registry."""
from __future__ import annotations

import datetime as dt

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
    q = s.add_parser("delete", help="delete a run and its files")
    q.add_argument("run_id")
    q.set_defaults(func=delete)


def _summary(m: dict) -> str:
    keys = [k for k in ("natural_acc", "attack_acc_top1", "attack_acc_top5") if k in m]
    out = []
    for k in keys:
        v = m[k]
        out.append(f"{k}={v['value'] if isinstance(v, dict) else v:.3f}")
    return " ".join(out)


def list_runs(args) -> int:
    rows = []
    for r in workspace(args).list(kind=args.kind, status=args.status):
        when = dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M")
        rows.append([r.id, r.kind, r.status, when, r.name, _summary(r.metrics)])
    print(table(rows, ["id", "kind", "status", "created", "name", "metrics"]) if rows else "no runs")
    return 0


def show(args) -> int:
    r = workspace(args).get(args.run_id)
    d = dict(r.__dict__)
    d["dir"] = str(r.dir)
    print_json(d)
    return 0


def delete(args) -> int:
    workspace(args).delete(args.run_id)
    print(f"deleted {args.run_id}")
    return 0
