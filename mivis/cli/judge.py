"""`mivis judge`: the human judge's votes ("Be the judge" page): tally a round, reset it."""
from __future__ import annotations

from ._common import print_json, table, workspace


def register(sub) -> None:
    p = sub.add_parser("judge", help="human votes on reconstructions: tally a round, reset it (a new round)")
    s = p.add_subparsers(dest="judge_cmd", required=True, metavar="ACTION")
    q = s.add_parser("tally", help="human top-1 accuracy of the current round with its 95%% identity interval")
    q.add_argument("run_id", help="an attack run id, or 'demo' for the shipped demo")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=tally)
    q = s.add_parser("reset", help="start a new round (earlier votes are kept but no longer counted)")
    q.add_argument("run_id", help="an attack run id, or 'demo'")
    q.set_defaults(func=reset)


def _pct(m) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    lo, hi = m.get("lo"), m.get("hi")
    return f"{100 * m['value']:.0f}%" + ("" if lo is None else f" [{100 * lo:.0f}, {100 * hi:.0f}]")


def tally(args) -> int:
    from ..votes import tally as tally_votes
    out = tally_votes(workspace(args, create=False), args.run_id)
    if args.json:
        print_json(out)
        return 0
    if not out["votes"]:
        print(f"{args.run_id}: no votes in round {out['round']} yet")
        return 0
    print(table([[out["round"], out["votes"], out["voters"], out["items"], _pct(out["accuracy"]),
                  f"{100 * out['chance']:.0f}%", f"{100 * out['none_share']:.0f}%"]],
                ["round", "votes", "voters", "items", "human top-1 (95% CI over identities)", "chance",
                 "'none of them'"]))
    return 0


def reset(args) -> int:
    from ..votes import reset_round
    rnd = reset_round(workspace(args, create=False), args.run_id)
    print(f"{args.run_id}: round {rnd} started; the earlier rounds' votes are kept but no longer counted")
    return 0
