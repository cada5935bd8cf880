"""The report with the independent judge: a dlib column, the paired drop under dlib, E's false-positive share,
and the paragraph on whether each effect under E holds under dlib, all read from stored evaluations (dlib's
verdicts as `evaluate rejudge --dlib` stores them; dlib itself is not needed here)."""
from __future__ import annotations

import pytest

IDS = list(range(10))


def _target(ws, acc: float) -> str:
    r = ws.create("target", {"model": {"arch": "resnet18"}})
    r.finish({"natural_acc": acc})
    return r.id


def _attack(ws, e: list[bool], d: list[bool] | None) -> str:
    """10 identities x 2 restarts; e / d: E's and dlib's verdict per identity (both restarts alike)."""
    r = ws.create("attack", {"attack": {"name": "gmi", "params": {"seed": 0}}})
    rows = []
    for c in IDS:
        for k in range(2):
            row = {"identity": c, "restart": k, "p_target": 0.9, "target_pred": c, "eval_top1": e[c],
                   "eval_top5": True, "eval_prob": 0.5, "eval_pred": c, "knn_dist": 1.0}
            if d is not None:
                row["top1@dlib"] = d[c]
            rows.append(row)
    r.write_json("evaluation.json", {"judge": {"name": "vgg11:e", "run": "eval-e", "arch": "vgg11"}, "metrics": {},
                                     "extra_judges": {}, "per_reconstruction": rows})
    r.finish({})
    return r.id


def test_report_rows_carry_dlib_and_say_whether_effects_hold(ws):
    from mivis.report.findings import independent_judge, summarise, table
    half = [c < 5 for c in IDS]
    groups = {
        # full: E calls everything right, dlib only identities 0-4
        (32, "resnet18", "gmi", "none", ""): {"seeds": {0: {"attack": _attack(ws, [True] * 10, half),
                                                            "target": _target(ws, 0.95)}}},
        # RoLSS: E calls everything wrong (a resolved +100 pp drop), dlib still right on 0-4 (no drop)
        (32, "resnet18", "gmi", "skips[1,1,1,0]", ""): {"seeds": {0: {"attack": _attack(ws, [False] * 10, half),
                                                                      "target": _target(ws, 0.9)}}},
        # another cut: wrong for both judges (the drop holds under dlib: +50 pp)
        (32, "resnet18", "gmi", "skips[1,1,0,0]", ""): {"seeds": {0: {"attack": _attack(ws, [False] * 10,
                                                                                        [False] * 10),
                                                                      "target": _target(ws, 0.9)}}},
    }
    rows = summarise(ws, groups)
    full, rolss, cut = (next(r for r in rows if r["defense"] == d) for d in ("none", "skips[1,1,1,0]", "skips[1,1,0,0]"))
    assert full["top1"]["value"] == 1.0 and full["top1_dlib"]["value"] == 0.5
    assert full["e_false_positive_dlib"]["value"] == pytest.approx(0.5)  # half of E's hits are someone else
    assert full["e_false_positive_dlib"]["lo"] < 0.5 < full["e_false_positive_dlib"]["hi"]
    assert rolss["vs_none"]["drop"]["value"] == 1.0 and rolss["vs_none"]["drop"]["resolved"]
    assert rolss["vs_none"]["drop_dlib"]["value"] == 0.0 and not rolss["vs_none"]["drop_dlib"]["resolved"]
    assert cut["vs_none"]["drop_dlib"]["value"] == pytest.approx(0.5) and cut["vs_none"]["drop_dlib"]["resolved"]
    text = table(rows)
    assert "dlib top-1 % [95% CI]" in text and "drop under dlib" in text
    line = next(ln for ln in text.splitlines() if "skips[1,1,1,0]" in ln)
    assert "+100.0 pp" in line and "+0.0 pp [+0.0, +0.0] not resolved" in line
    para = independent_judge(rows)
    assert "3 of 3 rows have dlib's verdicts" in para
    assert "Of the 2 effects resolved under E that dlib also judged, 1 hold under dlib" in para
    assert "1 are not resolved under dlib" in para and "resnet18 gmi 32 px skips[1,1,1,0]" in para
    rolss_line = next(ln for ln in para.splitlines() if "skips[1,1,1,0]" in ln and ln.startswith("|"))
    assert rolss_line.rstrip(" |").endswith("no: not resolved under dlib")


def test_report_without_dlib_verdicts_says_how_to_add_them(ws):
    from mivis.report.findings import independent_judge, summarise, table
    groups = {(32, "resnet18", "gmi", "none", ""): {"seeds": {0: {"attack": _attack(ws, [True] * 10, None),
                                                                  "target": _target(ws, 0.95)}}}}
    rows = summarise(ws, groups)
    assert "top1_dlib" not in rows[0]
    assert "evaluate rejudge --dlib" in independent_judge(rows)
    assert "| 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] | - |" in table(rows)  # top-1, top-5, no dlib
