"""`mivis judge`: the human judge's rounds ("Be the judge" page): tally, open, reveal, close or restart a round,
score the machine judges on its line-up, and the teacher key. The CLI acts as the teacher (whoever can run it
owns the workspace's files)."""
from __future__ import annotations

from ._common import print_json, table, workspace


def register(sub) -> None:
    p = sub.add_parser("judge", help="the class's rounds on Be the judge: tally, open, reveal, close, reset, key")
    s = p.add_subparsers(dest="judge_cmd", required=True, metavar="ACTION")
    q = s.add_parser("tally", help="human top-1 accuracy of the current round with its 95%% identity interval, "
                                   "beside E and dlib on the same line-up")
    q.add_argument("run_id", help="an attack run id, or 'demo' for the shipped demo")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=tally)
    q = s.add_parser("open", help="open a new round with K candidate faces per reconstruction (chance 1/K)")
    q.add_argument("run_id", help="an attack run id, or 'demo'")
    q.add_argument("--k", type=int, default=5, help="candidate faces per reconstruction (2..10; default 5)")
    q.set_defaults(func=open_cmd)
    q = s.add_parser("reveal", help="show everyone the answers of the current round (its voting ends)")
    q.add_argument("run_id", help="an attack run id, or 'demo'")
    q.set_defaults(func=reveal)
    q = s.add_parser("close", help="end the current round's voting without showing the answers")
    q.add_argument("run_id", help="an attack run id, or 'demo'")
    q.set_defaults(func=close)
    q = s.add_parser("reset", help="start a new round (earlier votes are kept but no longer counted)")
    q.add_argument("run_id", help="an attack run id, or 'demo'")
    q.add_argument("--k", type=int, help="candidate faces per reconstruction (default: the last round's)")
    q.set_defaults(func=reset)
    q = s.add_parser("lineup", help="score E and dlib on the run's line-ups (stored; done on 'open' too)")
    q.add_argument("run_id", help="an attack run id")
    q.set_defaults(func=lineup_cmd)
    q = s.add_parser("key", help="the teacher key the page asks for: --new creates (or replaces) it and prints it")
    q.add_argument("--new", action="store_true", help="create a new key (the old one stops working)")
    q.set_defaults(func=key_cmd)


def _pct(m) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    lo, hi = m.get("lo"), m.get("hi")
    return f"{100 * m['value']:.0f}%" + ("" if lo is None else f" [{100 * lo:.0f}, {100 * hi:.0f}]")


def tally(args) -> int:
    from .. import votes as V
    ws = workspace(args, create=False)
    out = V.tally(ws, args.run_id)
    line = V.lineup(ws, V.load_ballot(ws, args.run_id), n_boot=1000)
    if args.json:
        print_json(out | {"lineup": line})
        return 0
    k = out["k"]
    print(f"{args.run_id}: round {out['round']}, {out['state']}" + (f", {k} faces per reconstruction" if k else ""))
    if not out["votes"]:
        print(f"no votes in round {out['round']} yet")
    else:
        print(table([[out["round"], out["votes"], out["voters"], out["items"], _pct(out["accuracy"]),
                      f"{100 * out['chance']:.0f}%", f"{100 * out['none_share']:.0f}%"]],
                    ["round", "votes", "voters", "items", "human top-1 (95% CI over identities)", "chance",
                     "'none of them'"]))
    rows = [[r["judge"], r["unit"], _pct(r), f"{100 * line['chance']:.0f}%"] for r in line["rows"]]
    if rows:
        print(f"On the same {line['k']}-face line-up:")
        print(table(rows, ["judge", "per", "top-1 (95% CI)", "chance"]))
    for j, why in line["missing"].items():
        print(f"{j} on the line-up: {why}")
    return 0


def open_cmd(args) -> int:
    from .. import votes as V
    ws = workspace(args, create=False)
    b = V.load_ballot(ws, args.run_id)
    info = V.open_round(ws, b, args.k, V.Teacher.owner())
    if b.key != V.DEMO:
        V.lineup(ws, b, n_boot=10, compute=True)
    print(f"{args.run_id}: round {info['round']} open, {info['k']} faces per reconstruction (chance "
          f"{100 / info['k']:.0f}%)")
    return 0


def reveal(args) -> int:
    from .. import votes as V
    info = V.reveal_round(workspace(args, create=False), args.run_id, V.Teacher.owner())
    print(f"{args.run_id}: round {info['round']} revealed; its voting has ended")
    return 0


def close(args) -> int:
    from .. import votes as V
    info = V.close_round(workspace(args, create=False), args.run_id, V.Teacher.owner())
    print(f"{args.run_id}: round {info['round']} closed")
    return 0


def reset(args) -> int:
    from .. import votes as V
    rnd = V.reset_round(workspace(args, create=False), args.run_id, V.Teacher.owner(), k=args.k)
    print(f"{args.run_id}: round {rnd} started; the earlier rounds' votes are kept but no longer counted")
    return 0


def lineup_cmd(args) -> int:
    from .. import votes as V
    from ..evaluation import lineup as L
    ws = workspace(args, create=False)
    V.load_ballot(ws, args.run_id)  # one-line refusal for the demo, unknown or unfinished runs
    s = L.compute(ws, args.run_id)
    L.store(ws, s)
    print(f"{args.run_id}: line-up scores stored for " + (", ".join(s["scores"]) or "no judge") +
          "".join(f"; {j}: {why}" for j, why in s["missing"].items()))
    return 0


def key_cmd(args) -> int:
    from .. import votes as V
    ws = workspace(args)
    if args.new:
        key = V.new_teacher_key(ws, replace=True)
        print(f"teacher key: {key}\n(stored hashed in {ws.path}; shown only now; type it on Be the judge's "
              "Teacher panel)")
        return 0
    src = V.teacher_key_source(ws)
    print({"env": f"the teacher key is set by {V.TEACHER_ENV} in the server's environment",
           "workspace": "a teacher key exists (stored hashed); `judge key --new` replaces it",
           None: "no teacher key yet: `judge key --new` creates one (or set MIVIS_TEACHER_KEY)"}[src])
    return 0
