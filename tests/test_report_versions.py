"""Two reports side by side: verdicts that held and that changed, matched by cell."""
from mivis.report.versions import compare_rows, compare_table, verdict


def _row(defense, value, lo, hi, init="", seeds=3, top1=0.5, broken=False):
    r = {"image_size": 32, "arch": "resnet18", "attack": "gmi", "defense": defense, "init": init,
         "seeds": list(range(seeds)), "top1": {"value": top1}, "did_not_learn": broken}
    if value is not None:
        r["vs_none"] = {"drop": {"value": value, "lo": lo, "hi": hi, "resolved": lo > 0 or hi < 0}}
    return r


def test_verdicts_are_matched_by_cell_and_compared():
    old = [_row("none", None, 0, 0, top1=0.62), _row("skips[1,1,1,0]", 0.22, 0.14, 0.29),
           _row("skips[1,1,1,0]", -0.11, -0.2, -0.03, init="public"), _row("calor", 0.09, 0.03, 0.16),
           _row("bido", 0.07, -0.01, 0.15)]
    new = [_row("none", None, 0, 0, top1=0.55), _row("skips[1,1,1,0]", 0.18, 0.09, 0.27),
           _row("skips[1,1,1,0]", 0.02, -0.06, 0.1, init="public", seeds=5), _row("calor", -0.1, -0.2, -0.02),
           _row("tts", 0.1, 0.05, 0.2)]
    rows = compare_rows(old, new)
    by = {(c["cell"]["defense"], c["cell"]["init"]): c for c in rows}
    assert ("tts", "") not in by and len(rows) == 4  # only cells in both reports
    assert by[("none", "")]["status"] == "-"
    assert by[("skips[1,1,1,0]", "")]["status"] == "held"
    assert by[("skips[1,1,1,0]", "public")]["verdict_old"] == "leaks MORE"
    assert by[("skips[1,1,1,0]", "public")]["verdict_new"] == "not resolved"
    assert by[("skips[1,1,1,0]", "public")]["status"] == "changed" and by[("calor", "")]["status"] == "changed"
    assert by[("skips[1,1,1,0]", "public")]["seeds_new"] == 5
    md = compare_table(rows)
    assert md.count("\n") == 1 + len(rows) and "(public init) | 3 / 5 |" in md and "+18.0 [+9.0, +27.0]" in md
    assert verdict(_row("x", 0.5, 0.4, 0.6, broken=True)) == "did not learn"
