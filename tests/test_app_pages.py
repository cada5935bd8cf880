"""AppTest, issue 17's last items: presets applied by callbacks (a click during a slow rerun is not lost), the
Trade-off page's measured table in five short columns of words, and comparisons that name their runs."""
from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from test_app import APP, TINY_URL, app, assert_clean, open_page, texts, world  # noqa: E402,F401


def _value(at, key):
    for kind in ("number_input", "slider", "selectbox", "toggle"):
        found = [w for w in getattr(at, kind) if w.key == key]
        if found:
            return found[0].value
    raise KeyError(key)


def test_attack_preset_is_applied_in_the_run_that_follows_the_change(world):
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "attack", target=world["full"], attack="gmi")
    assert at.selectbox(key="attack:preset").value == "classroom"
    assert _value(at, "attack:gmi.iterations") == 100
    at.selectbox(key="attack:preset").set_value("paper").run()  # one run: the callback ran before the script
    assert_clean(at)
    assert _value(at, "attack:gmi.iterations") == 1500  # GMI's own count, not the classroom's 100 kept over
    assert "gmi.iterations" not in at.query_params and at.query_params["preset"] == "paper"
    at.number_input(key="attack:gmi.iterations").set_value(300).run()
    at.selectbox(key="attack:preset").set_value("gpu").run()
    assert _value(at, "attack:gmi.iterations") == 1500 and _value(at, "attack:gmi.compile") == "reduce-overhead"
    at.selectbox(key="attack:preset").set_value("classroom").run()
    assert_clean(at)
    assert _value(at, "attack:gmi.iterations") == 100 and _value(at, "attack:gmi.compile") == "off"
    assert "5 restarts = " in texts(at) and "100 iterations each" in texts(at)


def test_posterior_mean_on_the_attack_page_says_what_it_does_and_its_classroom_pool(world):
    """The gradient-free attack: its knobs, and in words a pool of samples averaged, not iterations optimised."""
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "attack", target=world["full"], attack="pmean")
    assert_clean(at)
    assert _value(at, "attack:pmean.restarts") == 1 and _value(at, "attack:pmean.iterations") == 10
    assert _value(at, "attack:pmean.top_k") == 100 and _value(at, "attack:pmean.samples_per_step") == 2000
    words = texts(at)
    assert "a pool of 20,000 prior samples" in words and "100 highest-scoring" in words
    assert "x 1 restart = " in words  # one restart, not "1 restarts"
    assert "iterations each, all optimised" not in words


def test_architecture_presets_apply_in_the_run_of_the_click(app):
    open_page(app, "architecture", **TINY_URL)
    rolss = next(b for b in app.button if b.label.startswith("RoLSS"))
    rolss.click().run()
    assert_clean(app)
    assert app.toggle(key="architecture:skip4").value is False
    assert all(app.toggle(key=f"architecture:skip{i}").value for i in (1, 2, 3))
    assert app.query_params["skip4"] == "false"  # the widget rendered the preset's value in that same run
    next(b for b in app.button if b.label.startswith("Full")).click().run()
    assert app.toggle(key="architecture:skip4").value is True and "skip4" not in app.query_params


def test_tradeoff_measured_table_is_columns_of_words_with_dlib_where_judged(app):
    from mivis import ui
    from mivis.report.findings import measured_effects
    rows = measured_effects(ui.ROOT)
    if not rows:
        pytest.skip("no committed study reports in this checkout")
    open_page(app, "tradeoff")
    tables = [m.value for m in app.markdown if m.value.startswith("| Target | Attack | Defense |")]
    studies = sorted({r["study"] for r in rows})
    assert len(tables) == len(studies)  # one tab per study, no "study" column
    assert sum(t.count("\n") - 1 for t in tables) == len(rows)
    for t in tables:  # five columns on every row, six where the study was judged by dlib too
        width = 7 if "Under dlib" in t.splitlines()[0] else 6
        assert all(line.count("|") == width for line in t.splitlines())
    judged = {r["study"] for r in rows if r["dlib"]}
    assert sum("Under dlib" in t for t in tables) == len(judged) >= 2  # the method-v2 studies judge with dlib
    assert "**+2.0** [-1.7, +6.7] not resolved" in "\n".join(tables)  # ResNet-18 RoLSS under GMI (v2) under dlib
    page = "\n".join(tables)
    assert "skips[" not in page and "tldmi[" not in page and "gmi[" not in page  # words, not the grid's names
    assert "last stage's skips removed (RoLSS)" in page and "GMI, 50 iterations" in page
    assert len(app.dataframe) == 1  # the paper's table only: the measured one wraps instead of scrolling sideways


def test_runs_comparison_names_its_runs(app, ws):
    from test_judge_pages import _pair_of_runs
    runs = _pair_of_runs(ws)
    open_page(app, "runs", run=runs["full"], vs=runs["rolss"])
    na, nb = f"gmi on full ({runs['full'][-6:]})", f"gmi on rolss ({runs['rolss'][-6:]})"
    frames = [f.value for f in app.dataframe]
    metrics = next(f for f in frames if "metric" in f.columns)
    assert list(metrics.columns) == ["metric", na, nb]  # named columns, not "A" / "B"
    settings = next(f for f in frames if "setting" in f.columns)
    assert list(settings.columns) == ["setting", na, nb]
    page = texts(app)
    assert "A (left)" not in page and "top-1 attack accuracy, gmi on full" in page
    assert "**not resolved**" in page and "neither gmi on full" in page  # E calls both 100%: +0.0 pp
