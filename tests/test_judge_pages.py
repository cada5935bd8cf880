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
    # E calls 4 of 6 reconstructions right, dlib 1 of 6; the independent judge is the default
    assert radio.value == "dlib"
    assert any(m.label == "Top-1 judged by dlib" and m.value == "17%" for m in at.metric)
    caps = [i.caption for img in at.get("image") for i in img.proto.imgs]
    assert caps and all(c.startswith(("real:", "✓ dlib ·", "✗ dlib ·")) for c in caps), caps
    radio.set_value("E").run()
    assert any(m.label == "Top-1 judged by E" for m in at.metric)
    page = texts(at)
    assert "E's false-positive share against dlib: 75%" in page  # 3 of E's 4 hits are someone else for dlib
    frames = [f.value for f in at.dataframe]
    judges = next(f for f in frames if "judge" in f.columns)
    assert list(judges["top-1 [95% CI]"].str.split(" ").str[0]) == ["67%", "17%"]
    radio.set_value("dlib").run()
    assert_clean(at)
    assert "Split by dlib's verdict" in " ".join(t.label for t in at.toggle)


def test_results_without_dlib_verdicts_says_how_to_add_them(at, ws):
    rid, _ = fake_attack(ws, dlib=False)
    open_page(at, "results", run=rid)
    assert at.radio(key="results:judge").options == ["E: evaluation model vgg11"]
    assert "No dlib verdicts on this run" in texts(at) and "rejudge --dlib" in texts(at)


def test_be_the_judge_page_stores_a_vote_and_refuses_a_second(at, ws, monkeypatch):
    from mivis import votes as V
    monkeypatch.delenv(V.TEACHER_ENV, raising=False)
    rid, _ = fake_attack(ws)
    open_page(at, "judge", run=rid)
    assert "Waiting for the teacher to open a round" in texts(at)
    assert not [x for x in at.button if x.label in ("1", "2", "3")]
    V.open_round(ws, V.load_ballot(ws, rid), 3, V.Teacher.owner())
    at.run()
    assert "who is this? (1 of 3)" in texts(at)
    faces = [x for x in at.button if x.label in ("1", "2", "3")]
    assert len(faces) == 3
    faces[0].click().run()
    assert_clean(at)
    assert "who is this? (2 of 3)" in texts(at)
    assert "it was" not in texts(at) and "Right" not in texts(at)  # no answer before the reveal
    t = V.tally(ws, rid)
    assert t["votes"] == 1 and t["voters"] == 1 and t["chance"] == pytest.approx(1 / 3)
    assert "votes: **1**" in texts(at) and "Class top-1" not in texts(at)  # the score would give answers away
    at.button(key=next(x.key for x in at.button if x.label == "None of them")).click().run()
    assert_clean(at)
    assert V.tally(ws, rid)["votes"] == 2 and V.tally(ws, rid)["none_share"] == 0.5
    # a student: no reset, reveal or open control; a guessed key is refused
    assert not [x for x in at.button if x.key in ("judge:open", "judge:reveal", "judge:close")]
    key = V.new_teacher_key(ws)  # the teacher created it earlier
    at.run()
    at.text_input(key="judge:key").set_value("0000-0000-0000")
    next(x for x in at.button if "Unlock" in x.label).click().run()
    assert_clean(at)
    assert any("wrong teacher key" in e.value for e in at.error)
    assert not [x for x in at.button if x.key == "judge:reveal"] and V.round_info(ws, rid)["state"] == V.OPEN
    # the teacher's key unlocks the controls: live score, reveal
    at.text_input(key="judge:key").set_value(key)
    next(x for x in at.button if "Unlock" in x.label).click().run()
    assert_clean(at)
    assert "Class top-1" in texts(at)
    at.button(key="judge:reveal").click().run()
    assert_clean(at)
    assert V.round_info(ws, rid)["state"] == V.REVEALED
    assert "Round 1 revealed" in texts(at) and "Same line-up: 3 faces, chance 33%" in texts(at)
    assert "Another question: which of all 6 private identities?" in texts(at)
    # a new round, from the teacher's slider
    at.slider(key="judge:k").set_value(4).run()
    at.button(key="judge:open").click().run()
    assert_clean(at)
    assert V.round_info(ws, rid) == {"round": 2, "k": 4, "state": V.OPEN}
    assert V.tally(ws, rid)["votes"] == 0 and "who is this? (1 of 3)" in texts(at)
    assert len([x for x in at.button if x.label in ("1", "2", "3", "4")]) == 4


def test_be_the_judge_unknown_run_in_the_url(at, ws):
    open_page(at, "judge", run="attack-20200101-000000-dead00")
    # the URL's run is not offered: the page falls back to the demo (or says so) without an exception
    assert at.selectbox(key="judge:run").value == "demo"


def _pair_of_runs(ws):
    """An undefended and a RoLSS target (natural accuracy 95% / 90%), each attacked on identities 0-3 (2 restarts):
    E calls every reconstruction of both right; dlib all of the full model's and none of RoLSS's."""
    from mivis.evaluation.bootstrap import bootstrap_mean
    out = {}
    for name, skips, acc, dlib_ok in (("full", {}, 0.95, True), ("rolss", {"skips": {"scales": [1, 1, 1, 0]}}, 0.9,
                                                                    False)):
        t = ws.create("target", {"model": {"arch": "resnet18", "img_size": 32, "defenses": skips}, "train": {}},
                      name=name)
        t.finish({"natural_acc": acc})
        a = ws.create("attack", {"attack": {"name": "gmi", "params": {"seed": 0, "identities": [0, 1, 2, 3],
                                                                       "restarts": 2}},
                                 "target_run": t.id, "eval_run": "eval-x", "prior_run": None, "data": {}},
                      parents=[t.id], name=f"gmi on {name}")
        rows = [{"identity": c, "restart": k, "p_target": 0.9, "target_pred": c, "eval_top1": True, "eval_top5": True,
                 "eval_prob": 0.9, "eval_pred": c, "knn_dist": 1.0, "top1@dlib": dlib_ok}
                for c in range(4) for k in range(2)]
        g = [r["identity"] for r in rows]
        e = bootstrap_mean([1.0] * 8, g, 200)
        d = bootstrap_mean([float(dlib_ok)] * 8, g, 200)
        extra = {"dlib": {"judge": "dlib", "attack_acc_top1": d}}
        a.write_json("evaluation.json", {"judge": {"name": "vgg11:x", "run": "eval-x", "arch": "vgg11"},
                                         "metrics": {"attack_acc_top1": e}, "extra_judges": extra,
                                         "per_reconstruction": rows})
        a.finish({"attack_acc_top1": e, "extra_judges": extra})
        out[name] = a.id
    return out


def test_tradeoff_page_switches_to_the_independent_judge(at, ws):
    import json as _json
    runs = _pair_of_runs(ws)
    open_page(at, "tradeoff")
    spec = _json.loads(at.get("plotly_chart")[0].proto.spec)
    assert sorted(y for t in spec["data"] if t.get("mode") == "markers" for y in t["y"]) == [100.0, 100.0]
    page = texts(at)  # the comparison names both runs (never "A − B") and the judge
    assert "Paired difference in top-1 attack accuracy under E, " in page and "A − B" not in page
    assert "**+0.0 pp**" in page or "**-0.0 pp**" in page
    assert "full" in page.split("under E, ")[1].split(":")[0] and "rolss" in page.split("under E, ")[1].split(":")[0]
    at.selectbox(key="tradeoff:judge").set_value("dlib").run()
    assert_clean(at)
    spec = _json.loads(at.get("plotly_chart")[0].proto.spec)
    assert sorted(y for t in spec["data"] if t.get("mode") == "markers" for y in t["y"]) == [0.0, 100.0]
    assert "under dlib" in spec["layout"]["title"]["text"]
    assert "Paired difference in top-1 attack accuracy under dlib, " in texts(at)
    assert "rolss \\(" in texts(at) and "leaks 100 pp less than full \\(" in texts(at)  # RoLSS leaks less


def test_runs_page_lists_dlib_next_to_e(at, ws):
    _pair_of_runs(ws)
    open_page(at, "runs")
    table = at.dataframe[0].value
    lines = [m for m in table["metrics"] if "attack acc top1" in m]
    assert len(lines) == 2 and all("under dlib" in m for m in lines)
    assert any("under dlib 0% [0, 0]" in m for m in lines) and any("under dlib 100%" in m for m in lines)


def test_be_the_judge_k_follows_the_ballot(at, ws, monkeypatch):
    """The demo offers up to 10 faces; a run on 6 private identities at most 6: the teacher's slider follows."""
    from mivis import votes as V
    monkeypatch.setenv(V.TEACHER_ENV, "t-key")
    rid, _ = fake_attack(ws)
    open_page(at, "judge")
    at.text_input(key="judge:key").set_value("t-key")
    next(x for x in at.button if "Unlock" in x.label).click().run()
    assert at.slider(key="judge:k").max == 10
    at.selectbox(key="judge:run").set_value(rid).run()
    assert_clean(at)
    assert at.slider(key="judge:k").max == 6


def test_a_vote_after_the_teacher_reset_is_not_counted_in_the_new_round(at, ws):
    from mivis import votes as V
    rid, _ = fake_attack(ws)
    V.open_round(ws, V.load_ballot(ws, rid), 3, V.Teacher.owner())
    open_page(at, "judge", run=rid)
    V.reset_round(ws, rid, V.Teacher.owner())  # the teacher, from another session or the CLI
    next(x for x in at.button if x.label == "1").click().run()
    assert_clean(at)
    assert any("The teacher started a new round" in e.value for e in at.error)
    assert V.tally(ws, rid)["votes"] == 0 and V.votes(ws, rid, round=1) == []
    assert "who is this? (1 of 3)" in texts(at)



def test_a_teacher_creates_the_key_on_the_page_and_gets_the_controls_in_the_same_run(at, ws, monkeypatch):
    from mivis import votes as V
    monkeypatch.delenv(V.TEACHER_ENV, raising=False)
    rid, _ = fake_attack(ws)
    open_page(at, "judge", run=rid)
    assert V.teacher_key_source(ws) is None and not [x for x in at.button if x.key == "judge:open"]
    at.button(key="judge:newkey").click().run()
    assert_clean(at)
    shown = [s.value for s in at.success if "Your teacher key" in s.value]
    assert shown and V.teacher_key_source(ws) is not None
    typed = shown[0].split("**")[1]
    V.check_teacher(ws, typed)  # the key shown is the one stored (hashed)
    assert [x for x in at.button if x.key == "judge:open"]  # the controls, without a second click
    at.button(key="judge:open").click().run()
    assert_clean(at)
    assert V.round_info(ws, rid)["state"] == V.OPEN
    at.run()  # shown only once
    assert not [s for s in at.success if "Your teacher key" in s.value]
