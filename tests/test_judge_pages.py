"""AppTest: the judges on the pages. Results shows E's and dlib's accuracy side by side with a judge choice, the
agreement table and E's false-positive share; "Be the judge" stores a vote and refuses a second one on the
same item. A hand-made attack run with stored E and dlib verdicts: no training, dlib itself not needed."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from test_app import assert_clean, open_page, texts as _texts  # noqa: E402


def texts(at) -> str:
    return _texts(at) + "\n" + "\n".join(str(h.value) for h in at.subheader)
from test_votes import fake_attack  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


@pytest.fixture
def at(ws):
    from mivis import ui
    ui.shutdown_managers()
    yield AppTest.from_file(APP, default_timeout=120)
    ui.shutdown_managers()


def test_results_shows_both_judges_and_e_false_positives(at, ws):
    rid, _ = fake_attack(ws)
    open_page(at, "results", run=rid)
    radio = at.radio(key="results:judge")
    assert radio.options == ["E: evaluation model vgg11", "dlib: independent face embedding"]
    # E calls 4 of 6 reconstructions right, dlib 1 of 6
    assert any(m.label == "Attack acc. top-1 (E)" for m in at.metric)
    page = texts(at)
    assert "E's false-positive share against dlib: 75%" in page  # 3 of E's 4 hits are someone else for dlib
    frames = [f.value for f in at.dataframe]
    judges = next(f for f in frames if "judge" in f.columns)
    assert list(judges["top-1 [95% CI]"].str.split(" ").str[0]) == ["67%", "17%"]
    radio.set_value("dlib").run()
    assert_clean(at)
    assert any(m.label == "Attack acc. top-1 (dlib)" and m.value == "17%" for m in at.metric)
    assert "Split by dlib's verdict" in " ".join(t.label for t in at.toggle)


def test_results_without_dlib_verdicts_says_how_to_add_them(at, ws):
    rid, _ = fake_attack(ws, dlib=False)
    open_page(at, "results", run=rid)
    assert at.radio(key="results:judge").options == ["E: evaluation model vgg11"]
    assert "No dlib verdicts on this run" in texts(at) and "rejudge --dlib" in texts(at)


def test_be_the_judge_page_stores_a_vote_and_refuses_a_second(at, ws):
    from mivis import votes as V
    rid, _ = fake_attack(ws)
    open_page(at, "judge", run=rid, k="3")
    assert "Who is this? (1 of 3)" in texts(at)
    faces = [b for b in at.button if b.label in ("A", "B", "C")]
    assert len(faces) == 3
    faces[0].click().run()
    assert_clean(at)
    assert "Who is this? (2 of 3)" in texts(at)
    t = V.tally(ws, rid)
    assert t["votes"] == 1 and t["voters"] == 1 and t["chance"] == pytest.approx(1 / 3)
    assert "votes: **1**" in texts(at)
    at.button(key=next(b.key for b in at.button if b.label == "None of them")).click().run()
    assert_clean(at)
    assert V.tally(ws, rid)["votes"] == 2 and V.tally(ws, rid)["none_share"] == 0.5
    # the teacher resets: a new round, nothing counted
    at.checkbox(key="judge:sure").check().run()
    at.button(key="judge:reset").click().run()
    assert_clean(at)
    assert V.tally(ws, rid)["votes"] == 0 and V.current_round(ws, rid) == 1
    assert "Class tally · round 1" in texts(at)


def test_be_the_judge_unknown_run_in_the_url(at, ws):
    open_page(at, "judge", run="attack-20200101-000000-dead00")
    # the URL's run is not offered: the page falls back to the demo (or says so) without an exception
    assert at.selectbox(key="judge:run").value == "demo"
