"""Two study reports side by side (findings.json of an earlier and a later run of the same grids): which
verdicts held and which changed, e.g. after the attacks were made to follow the papers' code (method v2)."""
from __future__ import annotations

import json
from pathlib import Path

from .findings import _defense_cell


def _key(r: dict) -> tuple:
    return r["image_size"], r["arch"], r["attack"], r["defense"], r.get("init", "")


def verdict(r: dict) -> str:
    """'leaks less' / 'leaks MORE' (resolved), 'not resolved', 'did not learn', or '-' (the reference row)."""
    if r.get("did_not_learn"):
        return "did not learn"
    vs = r.get("vs_none")
    if not vs:
        return "-"
    d = vs["drop"]
    if not d["resolved"]:
        return "not resolved"
    return "leaks less" if d["value"] > 0 else "leaks MORE"


def _drop(r: dict) -> str:
    vs = r.get("vs_none")
    if not vs:
        return "-"
    d = vs["drop"]
    return f"{100 * d['value']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]"


def compare_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """One row per cell present in both reports, in the new report's order."""
    before = {_key(r): r for r in old}
    out = []
    for r in new:
        o = before.get(_key(r))
        if o is None:
            continue
        vo, vn = verdict(o), verdict(r)
        out.append({"cell": r, "old": o, "top1_old": o["top1"]["value"], "top1_new": r["top1"]["value"],
                    "drop_old": _drop(o), "drop_new": _drop(r), "verdict_old": vo, "verdict_new": vn,
                    "seeds_old": len(o["seeds"]), "seeds_new": len(r["seeds"]),
                    "status": "-" if vn == "-" else ("held" if vo == vn else "changed")})
    return out


def compare_table(rows: list[dict]) -> str:
    md = ["| size | arch | attack | defense | seeds (v1 / v2) | top-1 % v1 | top-1 % v2 | paired drop pp v1 | "
          "paired drop pp v2 | verdict v1 | verdict v2 | |", "|" + "---|" * 12]
    for c in rows:
        r = c["cell"]
        md.append(f"| {r['image_size']} | {r['arch']} | {r['attack']} | {_defense_cell(r)} | "
                  f"{c['seeds_old']} / {c['seeds_new']} | "
                  f"{100 * c['top1_old']:.1f} | {100 * c['top1_new']:.1f} | {c['drop_old']} | {c['drop_new']} | "
                  f"{c['verdict_old']} | {c['verdict_new']} | **{c['status']}** |")
    return "\n".join(md)


def compare_files(old: Path, new: Path) -> str:
    rows = compare_rows(json.loads(Path(old).read_text()), json.loads(Path(new).read_text()))
    held = sum(c["status"] == "held" for c in rows)
    changed = [c for c in rows if c["status"] == "changed"]
    head = (f"{len(rows)} cells in both reports; of the {held + len(changed)} comparisons with no defense, "
            f"{held} verdicts held and {len(changed)} changed.")
    return head + "\n\n" + compare_table(rows)
