"""Two study reports side by side (findings.json of an earlier and a later run of the same grids): which
verdicts held and which changed, e.g. after the attacks were made to follow the papers' code (method v2)."""
from __future__ import annotations

import json
from pathlib import Path

from .findings import _defense_cell, drop_direction, drop_interval


def _key(r: dict) -> tuple:
    return r["image_size"], r["arch"], r["attack"], r["defense"], r.get("init", "")


def verdict(r: dict) -> str:
    """'leaks less' / 'leaks MORE' (resolved), 'not resolved', 'did not learn', or '-' (the reference row)."""
    if r.get("did_not_learn"):
        return "did not learn"
    vs = r.get("vs_none")
    return drop_direction(vs["drop"]) if vs else "-"


def _drop(r: dict) -> str:
    vs = r.get("vs_none")
    return drop_interval(vs["drop"]) if vs else "-"


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


def read_findings(path: Path) -> list[dict]:
    """A report's findings.json (the rows `build_report` writes), refused in one line (ParamError naming the
    file) when it is missing, not JSON, or not a list of report rows."""
    from ..params import ParamError
    path = Path(path)
    try:
        rows = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ParamError(f"cannot read the report file {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise ParamError(f"{path} is not a report's findings.json (not JSON: {str(e).splitlines()[0][:100]})") \
            from None
    if not isinstance(rows, list):
        raise ParamError(f"{path} is not a report's findings.json (a list of rows is needed, not "
                         f"{type(rows).__name__})")
    for i, r in enumerate(rows):
        problem = _row_problem(r)
        if problem:
            raise ParamError(f"{path} is not a report's findings.json: row {i + 1} {problem}")
    return rows


def _row_problem(r) -> str | None:
    if not isinstance(r, dict):
        return f"is not an object ({type(r).__name__})"
    missing = [k for k in ("image_size", "arch", "attack", "defense", "seeds", "top1") if k not in r]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not isinstance(r["seeds"], list) or not isinstance(r["top1"], dict) or not _number(r["top1"].get("value")):
        return "has malformed seeds or top1"
    vs = r.get("vs_none")
    if vs is not None and not (isinstance(vs, dict) and _drop_ok(vs.get("drop"))
                               and (vs.get("drop_dlib") is None or _drop_ok(vs["drop_dlib"]))):
        return "has a malformed vs_none (a paired drop needs value, lo, hi and resolved)"
    try:
        hash(_key(r))
    except TypeError:
        return "has a malformed image_size, arch, attack, defense or init"
    return None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _drop_ok(d) -> bool:
    return isinstance(d, dict) and all(_number(d.get(k)) for k in ("value", "lo", "hi")) \
        and isinstance(d.get("resolved"), bool)


def compare_files(old: Path, new: Path) -> str:
    rows = compare_rows(read_findings(old), read_findings(new))
    held = sum(c["status"] == "held" for c in rows)
    changed = [c for c in rows if c["status"] == "changed"]
    head = (f"{len(rows)} cells in both reports; of the {held + len(changed)} comparisons with no defense, "
            f"{held} verdicts held and {len(changed)} changed.")
    return head + "\n\n" + compare_table(rows)


# --- do an earlier report's resolved effects survive a rerun and the independent judge? ----------------------
SURVIVAL_START = "<!-- mivis: effects under the independent judge (start) -->"
SURVIVAL_END = "<!-- mivis: effects under the independent judge (end) -->"


def _judged(vs: dict | None, field: str) -> tuple[str, str]:
    """(paired drop with interval, verdict) of one judge's drop in a `vs_none` entry."""
    d = (vs or {}).get(field)
    if not d:
        return "-", "no verdicts" if vs else "-"
    return drop_interval(d), drop_direction(d)


def survival_rows(old: list[dict], reruns: dict[str, list[dict]]) -> list[dict]:
    """One row per effect resolved under E in `old`: its drop there, and in the first rerun holding the same
    cell, the drop and verdict under E and under dlib (None when no rerun has the cell)."""
    index = {}
    for label, rows in reruns.items():
        for r in rows:
            index.setdefault(_key(r), (label, r))
    out = []
    for o in old:
        v = verdict(o)
        if v not in ("leaks less", "leaks MORE"):
            continue
        label, r = index.get(_key(o), (None, None))
        e = _judged(r.get("vs_none"), "drop") if r else ("-", "-")
        dl = _judged(r.get("vs_none"), "drop_dlib") if r else ("-", "-")
        out.append({"cell": o, "verdict_old": v, "drop_old": _drop(o), "rerun": label,
                    "drop_e": e[0], "verdict_e": e[1] if r is None or not r.get("did_not_learn") else "did not learn",
                    "drop_dlib": dl[0], "verdict_dlib": dl[1]})
    return out


def survival_section(old_path: Path, reruns: dict[str, Path]) -> str:
    """Markdown: which of the earlier report's resolved effects hold when rerun, under E and under dlib."""
    rows = survival_rows(read_findings(old_path), {label: read_findings(p) for label, p in reruns.items()})
    rerun = [c for c in rows if c["rerun"]]
    same = [c for c in rerun if c["verdict_e"] == c["verdict_old"]]
    dlib = [c for c in rerun if c["verdict_dlib"] == c["verdict_old"]]
    judged = [c for c in rerun if c["verdict_dlib"] not in ("-", "no verdicts")]
    md = [f"Of the {len(rows)} effects this report (from before method version 2) resolves under the evaluation "
          f"model E, {len(rerun)} were rerun "
          f"with method version 2 ({', '.join(f'`{p}`' for p in reruns.values())}): {len(same)} of them are "
          f"resolved again in the same direction under E, and {len(dlib)} of the {len(judged)} with dlib's verdicts "
          f"are resolved in that direction under dlib's face embedding, the judge that never saw the private "
          f"images. A rerun pairs the same seeds, identities and starting latents, so each drop is a paired "
          f"difference with its 95% bootstrap interval over identities (positive = the defense leaks less)."
          + ("" if len(rerun) == len(rows) else
             f" {len(rows) - len(rerun)} effects have no rerun yet (marked 'not rerun')."), "",
          "| size | arch | attack | defense | drop pp here (v1, E) | verdict here | rerun | drop pp v2 under E | "
          "verdict v2 under E | drop pp v2 under dlib | verdict v2 under dlib |", "|" + "---|" * 11]
    for c in rows:
        r = c["cell"]
        md.append(f"| {r['image_size']} | {r['arch']} | {r['attack']} | {_defense_cell(r)} | {c['drop_old']} | "
                  f"{c['verdict_old']} | {c['rerun'] or 'not rerun'} | {c['drop_e']} | {c['verdict_e']} | "
                  f"{c['drop_dlib']} | {c['verdict_dlib']} |")
    return "\n".join(md)


def write_survival(md_path: Path, old_json: Path, reruns: dict[str, Path]) -> str:
    """Put (or replace) the survival section at the top of a generated report, below its title; the rest
    of the file is left as it was."""
    from ..params import ParamError
    md_path = Path(md_path)
    section = survival_section(old_json, reruns)  # every findings.json checked before the report is read
    try:
        text = md_path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ParamError(f"cannot read the report {md_path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ParamError(f"{md_path} is not a report's markdown (not UTF-8 text)") from None
    block = (f"{SURVIVAL_START}\n## Do these effects survive the rerun and the independent judge?\n\n"
             f"{section}\n{SURVIVAL_END}\n")
    if SURVIVAL_START in text and SURVIVAL_END in text:
        a, b = text.index(SURVIVAL_START), text.index(SURVIVAL_END) + len(SURVIVAL_END)
        text = text[:a] + block.rstrip("\n") + text[b:]
    else:
        head, sep, rest = text.partition("\n\n")  # after the title line
        text = head + sep + block + "\n" + rest
    tmp = md_path.with_suffix(md_path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(md_path)
    return block
