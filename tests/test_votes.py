"""The human judge: ballots, vote storage, refusals, rounds, tallies with identity-bootstrap intervals, the
agreement table (E vs dlib vs humans) and the `judge` CLI. No training: a finished attack run is written by
hand with known reconstructions and verdicts, and the shipped demo is read from assets/demo/."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mivis import votes as V
from mivis.evaluation.agreement import e_false_positive, judge_table, ratio
from mivis.params import ParamError
from mivis.runs import Workspace

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo"
DATA = {"dataset": "synthetic", "n_private": 6, "image_size": 32, "test_per_identity": 2}
needs_demo = pytest.mark.skipif(not (DEMO / "demo.json").exists(), reason="assets/demo/ is not in this checkout")


def fake_attack(ws: Workspace, dlib: bool = True) -> tuple[str, list[dict]]:
    """A finished attack run on identities 0, 1, 2 with 2 restarts each: known p_T and verdicts."""
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    p = torch.tensor([0.2, 0.9, 0.8, 0.3, 0.5, 0.6])  # the ballot's items are rows 1, 2, 5
    e_top1 = [True, True, True, False, False, True]
    d_top1 = [False, False, True, False, False, False]
    run = ws.create("attack", {"attack": {"name": "gmi", "params": {"seed": 0}}, "data": DATA, "target_run": None},
                    name="hand-made")
    run.save_weights({"x": (torch.rand(6, 1, 32, 32) * 2 - 1).half(), "y": y, "restart": torch.tensor([0, 1] * 3),
                      "p_target": p, "target_pred": y.clone()}, name="reconstructions.safetensors")
    rows = [{"identity": int(y[i]), "restart": i % 2, "p_target": float(p[i]), "target_pred": int(y[i]),
             "eval_top1": e_top1[i], "eval_top5": True, "eval_prob": 0.5, "eval_pred": int(y[i]), "knn_dist": 1.0,
             **({"top1@dlib": d_top1[i]} if dlib else {})} for i in range(6)]
    extra = {"dlib": {"judge": "dlib", "attack_acc_top1": {"value": 1 / 6, "lo": 0.0, "hi": 0.5, "n": 3}}} if dlib else {}
    run.write_json("evaluation.json", {"judge": {"name": "vgg11:x", "run": "eval-x", "arch": "vgg11"},
                                       "metrics": {"attack_acc_top1": {"value": 4 / 6, "lo": 0.5, "hi": 1.0, "n": 3}},
                                       "extra_judges": extra, "per_reconstruction": rows})
    run.finish({})
    return run.id, rows


@needs_demo
def test_demo_votes_persist_and_tally_with_chance_and_rounds(tmp_path):
    ws = Workspace(tmp_path / "ws")
    b = V.load_ballot(ws, V.DEMO)
    assert len(b) == 10 and b.k_max == 10 and b.recon[0].dtype == np.uint8
    for item in range(len(b)):
        c = b.candidates(item, 5, 0)
        assert len(set(c)) == 5 and b.identity[item] in c
        assert c == b.candidates(item, 5, 0)  # the same faces, in the same order, for every voter of a round
    draws = {tuple(b.candidates(3, 5, s)) for s in range(6)}
    assert len(draws) > 1  # another round (seed) draws and shuffles again
    # the same faces for every voter, in each voter's own order
    orders = {tuple(b.candidates(3, 5, 0, voter=f"v{i}")) for i in range(8)}
    assert len(orders) > 1 and all(sorted(o) == sorted(b.candidates(3, 5, 0)) for o in orders)
    with pytest.raises(ParamError, match="the teacher has not opened a round yet"):
        V.cast_vote(ws, b, 0, "s0", 5, V.NONE)
    assert V.open_round(ws, b, 5, V.Teacher.owner()) == {"round": 1, "k": 5, "state": V.OPEN}
    # three sessions: s0 always right, s1 always 'none of them', s2 right on items 0-4 only
    for item in range(10):
        c = b.candidates(item, 5, 1)
        wrong = next(x for x in c if x != b.identity[item])
        V.cast_vote(ws, b, item, "s0", 5, b.identity[item])
        V.cast_vote(ws, b, item, "s1", 5, V.NONE)
        V.cast_vote(ws, b, item, "s2", 5, b.identity[item] if item < 5 else wrong)
    with pytest.raises(ParamError, match=r"already voted on this reconstruction \(item 4"):
        V.cast_vote(ws, b, 4, "s2", 5, V.NONE)
    t = V.tally(Workspace(tmp_path / "ws"), V.DEMO)  # a new process (restart) reads the same votes
    assert (t["votes"], t["voters"], t["items"]) == (30, 3, 10)
    assert t["accuracy"]["value"] == pytest.approx(15 / 30)
    assert t["accuracy"]["lo"] < 0.5 < t["accuracy"]["hi"] and t["accuracy"]["n"] == 10
    assert t["chance"] == pytest.approx(0.2) and t["none_share"] == pytest.approx(1 / 3)
    assert V.voted_items(ws, V.DEMO, "s2") == set(range(10))
    # E's verdicts on the demo's shown items against the humans' votes
    j = V.judges(ws, V.DEMO, n_boot=200)
    e_items = b.machine["E"]
    assert j["accuracy"]["E"]["value"] == pytest.approx(np.mean(e_items))
    fp = e_false_positive(j)["humans"]  # of the votes on items E calls right, the share that are wrong
    n_e = sum(e_items)
    wrong_on_e = sum(1 + (i >= 5) for i in range(10) if e_items[i])  # s1 always; s2 on items 5-9
    assert fp["value"] == pytest.approx(wrong_on_e / (3 * n_e))
    # the teacher reveals: voting ends
    assert V.reveal_round(ws, V.DEMO, V.Teacher.owner())["state"] == V.REVEALED
    with pytest.raises(ParamError, match="round 1 is revealed: its voting has ended"):
        V.cast_vote(ws, b, 4, "s9", 5, V.NONE)
    # the teacher resets: a new round counts from zero, the old votes stay stored
    assert V.reset_round(ws, V.DEMO, V.Teacher.owner()) == 2
    t = V.tally(ws, V.DEMO)
    assert t["votes"] == 0 and t["accuracy"] is None and t["round"] == 2 and t["state"] == V.OPEN
    assert len(V.votes(ws, V.DEMO, round=1)) == 30
    V.cast_vote(ws, b, 4, "s2", 5, V.NONE)  # a new round: the same session may vote on the item again
    assert V.tally(ws, V.DEMO)["votes"] == 1


def test_bad_votes_are_refused_with_a_message(ws):
    rid, _ = fake_attack(ws)
    b = V.load_ballot(ws, rid)
    with pytest.raises(ParamError, match="no attack run 'attack-nope'"):
        V.load_ballot(ws, "attack-nope")
    with pytest.raises(ParamError, match="no attack run 'attack-nope'"):
        V.tally(ws, "attack-nope")
    with pytest.raises(ParamError, match="no attack run 'attack-nope'"):
        V.reset_round(ws, "attack-nope", V.Teacher.owner())
    with pytest.raises(ParamError, match="only the teacher can change a round"):
        V.open_round(ws, b, 3, None)
    with pytest.raises(ParamError, match=r"k=1: .* integer in 2\.\.6"):
        V.open_round(ws, b, 1, V.Teacher.owner())
    V.open_round(ws, b, 3, V.Teacher.owner())
    with pytest.raises(ParamError, match="round 1 shows 3 faces per reconstruction, not 4"):
        V.cast_vote(ws, b, 0, "s", 4, V.NONE)
    with pytest.raises(ParamError, match=r"item 7 is not on the ballot .* items are 0\.\.2"):
        V.cast_vote(ws, b, 7, "s", 3, V.NONE)
    with pytest.raises(ParamError, match=r"k=1: .* integer in 2\.\.6"):
        V.cast_vote(ws, b, 0, "s", 1, V.NONE)
    shown = b.candidates(0, 3, 1)
    absent = next(c for c in b.gallery if c not in shown)
    with pytest.raises(ParamError, match="was not among the 3 faces shown for item 0"):
        V.cast_vote(ws, b, 0, "s", 3, absent)
    with pytest.raises(ParamError, match="voter's id"):
        V.cast_vote(ws, b, 0, "", 3, V.NONE)
    other = ws.create("target", {"x": 1})
    other.finish({})
    with pytest.raises(ParamError, match="voting needs a finished attack run"):
        V.load_ballot(ws, other.id)
    assert V.votes(ws, rid) == []  # nothing refused was stored


def test_attack_run_ballot_and_the_judges_agreement_table(ws):
    rid, rows = fake_attack(ws)
    b = V.load_ballot(ws, rid)
    assert b.rows == [1, 2, 5] and b.identity == [0, 1, 2]  # each identity's most likely reconstruction
    assert sorted(b.gallery) == list(range(6)) and b.gallery[0].shape == (32, 32, 1)
    assert b.machine == {"E": [True, True, True], "dlib": [False, True, False]}
    V.open_round(ws, b, 3, V.Teacher.owner())
    # 4 voters: right on identities 0 and 1, 'none of them' on identity 2
    for s in range(4):
        for item in range(3):
            V.cast_vote(ws, b, item, f"s{s}", 3, b.identity[item] if item < 2 else V.NONE)
    j = V.judges(ws, rid, n_boot=300)
    assert j["judges"] == ["E", "dlib", "humans"]
    assert j["accuracy"]["E"]["value"] == pytest.approx(4 / 6)
    assert j["accuracy"]["dlib"]["value"] == pytest.approx(1 / 6)
    assert j["accuracy"]["humans"]["value"] == pytest.approx(8 / 12)
    # the machines' accuracies over the run's reconstructions carry the run's stored headline intervals (the
    # Results page shows both side by side); the humans' is bootstrapped here
    ev = json.loads(ws.get(rid).file("evaluation.json").read_text())
    ev["metrics"]["attack_acc_top1"].update(lo=0.55, hi=0.77)  # no bootstrap over 3 identities gives these
    ev["extra_judges"]["dlib"]["attack_acc_top1"].update(lo=0.01, hi=0.33)
    stored = V.judges(ws, rid, ev, n_boot=300)["accuracy"]
    assert (stored["E"]["lo"], stored["E"]["hi"]) == (0.55, 0.77)
    assert (stored["dlib"]["lo"], stored["dlib"]["hi"]) == (0.01, 0.33)
    ev["metrics"]["attack_acc_top1"]["value"] = 0.5  # another number than the verdicts give: not borrowed
    assert V.judges(ws, rid, ev, n_boot=300)["accuracy"]["E"]["lo"] != 0.55
    fp = e_false_positive(j)
    # E calls rows 0, 1, 2, 5 right; dlib agrees only on row 2: 3 of 4 of E's hits are false positives for dlib
    assert fp["dlib"]["value"] == pytest.approx(3 / 4) and fp["dlib"]["unit"] == "reconstruction"
    # humans: E right on all three shown items; the 4 votes on identity 2 are wrong
    assert fp["humans"]["value"] == pytest.approx(4 / 12) and fp["humans"]["unit"] == "vote"
    ed = next(p for p in j["pairs"] if (p["a"], p["b"]) == ("E", "dlib"))
    assert (ed["both_correct"], ed["only_a"], ed["only_b"], ed["both_wrong"]) == (1, 3, 0, 2)
    assert ed["agree"]["value"] == pytest.approx(3 / 6)
    dh = next(p for p in j["pairs"] if (p["a"], p["b"]) == ("dlib", "humans"))
    # dlib and the votes agree on identity 1 (both right) and 2 (both wrong), not on 0 (dlib: wrong)
    assert dh["agree"]["value"] == pytest.approx(8 / 12) and dh["only_b"] == 4


def test_ratio_bootstrap_is_over_identities():
    # identity 0: 10 of 10, identity 1: 0 of 10 -> 50%, and resampling identities spans 0..100%
    num = [1] * 10 + [0] * 10
    r = ratio(num, [1] * 20, [0] * 10 + [1] * 10, n_boot=500)
    assert r["value"] == pytest.approx(0.5) and r["lo"] == 0.0 and r["hi"] == 1.0 and r["n"] == 2
    # many identities, each at 50%: the interval is tight around 0.5
    g = np.repeat(np.arange(40), 2)
    r = ratio(np.tile([1, 0], 40), np.ones(80), g, n_boot=500)
    assert r["lo"] == r["hi"] == pytest.approx(0.5)
    assert ratio([0, 0], [0, 0], [0, 1])["value"] is None  # nothing to divide by: no number, no interval
    t = judge_table([], [], n_boot=10)
    assert t == {"accuracy": {}, "pairs": [], "judges": []}


def test_judge_cli_tally_and_reset(ws, capsys):
    from mivis.cli import main

    def cli(*args):
        rc = main(["--workspace", str(ws.path), "judge", *args])
        out = capsys.readouterr()
        return rc, out.out, out.err
    rid, _ = fake_attack(ws, dlib=False)
    b = V.load_ballot(ws, rid)
    rc, out, err = cli("open", rid, "--k", "4")
    assert rc == 0 and "round 1 open, 4 faces" in out, err
    V.cast_vote(ws, b, 0, "a", 4, b.identity[0])
    V.cast_vote(ws, b, 1, "a", 4, V.NONE)
    rc, out, err = cli("tally", rid, "--json")
    assert rc == 0, err
    out = json.loads(out)
    assert out["votes"] == 2 and out["accuracy"]["value"] == 0.5 and out["chance"] == 0.25
    rc, out, _ = cli("tally", rid)
    assert "human top-1" in out and "50%" in out and "round 1, open, 4 faces" in out
    rc, out, _ = cli("reveal", rid)
    assert rc == 0 and "round 1 revealed" in out
    rc, out, _ = cli("reset", rid)
    assert rc == 0 and "round 2 started" in out
    assert V.tally(ws, rid)["votes"] == 0
    rc, _, err = cli("tally", "attack-20990101-000000-abcdef")
    assert rc == 2 and "no attack run 'attack-20990101-000000-abcdef'" in err


def test_evaluate_show_prints_the_judges_agreement(ws, capsys):
    from mivis.cli import main
    rid, _ = fake_attack(ws)
    b = V.load_ballot(ws, rid)
    V.open_round(ws, b, 3, V.Teacher.owner())
    for item in range(3):  # one voter: right on identities 0 and 1, 'none of them' on 2
        V.cast_vote(ws, b, item, "s", 3, b.identity[item] if item < 2 else V.NONE)
    assert main(["--workspace", str(ws.path), "evaluate", "show", rid]) == 0
    out = capsys.readouterr().out
    assert "E vs dlib" in out and "E vs humans" in out and "dlib vs humans" in out
    assert "E's false-positive share against dlib: 75%" in out
    assert "E's false-positive share against humans: 33%" in out
    assert main(["--workspace", str(ws.path), "evaluate", "show", rid, "--json"]) == 0
    j = json.loads(capsys.readouterr().out)["judges"]
    assert j["judges"] == ["E", "dlib", "humans"]


def test_malformed_evaluation_rows_are_one_message(ws):
    rid, rows = fake_attack(ws)
    rec = ws.get(rid)
    ev = json.loads(rec.file("evaluation.json").read_text())
    for r in ev["per_reconstruction"]:
        del r["p_target"]
    rec.file("evaluation.json").write_text(json.dumps(ev))
    with pytest.raises(ParamError, match="malformed per-reconstruction rows"):
        V.judges(ws, rid)


@needs_demo
def test_votes_on_an_earlier_demo_build_are_not_counted(tmp_path, monkeypatch):
    """A rebuilt assets/demo/ shows other faces under the same item numbers: its votes start afresh."""
    import shutil
    old = tmp_path / "demo"
    shutil.copytree(DEMO, old)
    monkeypatch.setenv("MIVIS_DEMO", str(old))
    ws = Workspace(tmp_path / "ws")
    b = V.load_ballot(ws, V.DEMO)
    V.open_round(ws, b, 5, V.Teacher.owner())
    V.cast_vote(ws, b, 0, "s0", 5, b.identity[0])
    assert V.tally(ws, V.DEMO)["votes"] == 1 and V.voted_items(ws, V.DEMO, "s0") == {0}
    spec = (old / "demo.json").read_text()
    (old / "demo.json").write_text(spec.replace('"title"', '"rebuilt": true, "title"', 1))  # another build
    assert V.tally(ws, V.DEMO)["votes"] == 0 and V.voted_items(ws, V.DEMO, "s0") == set()
    V.open_round(ws, b, 5, V.Teacher.owner())  # the rebuilt demo's own first round
    V.cast_vote(ws, V.load_ballot(ws, V.DEMO), 0, "s0", 5, b.identity[0])  # the same session may vote again
    (old / "demo.json").write_text(spec)  # back to the first build: its vote is still there
    assert V.tally(ws, V.DEMO)["votes"] == 1


def test_teacher_key_env_and_stored(ws, monkeypatch):
    monkeypatch.delenv(V.TEACHER_ENV, raising=False)
    assert V.teacher_key_source(ws) is None
    with pytest.raises(ParamError, match="no teacher key yet"):
        V.check_teacher(ws, "anything")
    key = V.new_teacher_key(ws)
    assert V.teacher_key_source(ws) == "workspace" and len(key) == 14
    with pytest.raises(ParamError, match="a teacher key exists already"):  # a student cannot take over the class
        V.new_teacher_key(ws)
    with pytest.raises(ParamError, match="wrong teacher key"):
        V.check_teacher(ws, "0000-0000-0000")
    with pytest.raises(ParamError, match="wrong teacher key"):
        V.check_teacher(ws, "")
    assert isinstance(V.check_teacher(ws, f" {key} "), V.Teacher)
    with V._connect(ws) as con:  # only a salted hash is stored
        assert key not in str(dict(con.execute("SELECT * FROM vote_teacher").fetchone()))
    new = V.new_teacher_key(ws, replace=True)
    with pytest.raises(ParamError, match="wrong teacher key"):
        V.check_teacher(ws, key)
    assert V.check_teacher(ws, new)
    monkeypatch.setenv(V.TEACHER_ENV, "class-of-2026")  # the server's environment wins
    assert V.teacher_key_source(ws) == "env"
    with pytest.raises(ParamError, match="wrong teacher key"):
        V.check_teacher(ws, new)
    assert V.check_teacher(ws, "class-of-2026")
    with pytest.raises(ParamError, match="set by MIVIS_TEACHER_KEY"):
        V.new_teacher_key(ws, replace=True)


def test_deleting_a_run_with_votes_needs_the_cascade(ws, capsys):
    from mivis.cli import main
    from mivis.runs import RunError
    rid, _ = fake_attack(ws)
    b = V.load_ballot(ws, rid)
    V.open_round(ws, b, 3, V.Teacher.owner())
    V.cast_vote(ws, b, 0, "v-a", 3, V.NONE)
    with pytest.raises(RunError, match=f"run {rid} has 1 class vote"):
        ws.delete(rid)
    assert ws.exists(rid) and V.tally(ws, rid)["votes"] == 1  # nothing deleted
    assert main(["--workspace", str(ws.path), "runs", "delete", rid]) == 2
    assert "--cascade" in capsys.readouterr().err
    assert main(["--workspace", str(ws.path), "runs", "delete", rid, "--cascade"]) == 0
    assert not ws.exists(rid) and V.vote_counts(ws, [rid]) == {}
    assert V.round_info(ws, rid)["state"] == V.WAITING  # its round went with it
    with pytest.raises(ParamError, match=f"no attack run '{rid}'"):  # what a page still showing it is told
        V.tally(ws, rid)


def test_machine_judges_on_the_same_lineup(ws):
    """E and dlib pick among the round's k faces from stored scores: E always the attacked identity, dlib the
    attacked identity on items 0 and 1 and another candidate on item 2; the class beside them on the items it
    voted on, chance 1/k."""
    from mivis.evaluation import lineup as L
    rid, _ = fake_attack(ws)
    b = V.load_ballot(ws, rid)
    gallery = sorted(b.gallery)
    e = [[1.0 if c == b.identity[i] else 0.0 for c in gallery] for i in range(len(b))]
    V.open_round(ws, b, 4, V.Teacher.owner())
    wrong = [next(c for c in b.candidates(i, 4, 1) if c != b.identity[i]) for i in range(len(b))]
    # dlib: right on items 0 and 1, wrong on item 2 (which the class will not vote on)
    d = [[1.0 if c == (b.identity[i] if i < 2 else wrong[i]) else 0.0 for c in gallery] for i in range(len(b))]
    L.store(ws, {"run": rid, "items": b.rows, "identity": b.identity, "gallery": gallery,
                 "scores": {"E": e, "dlib": d}, "missing": {}})
    V.cast_vote(ws, b, 0, "v-a", 4, b.identity[0])
    V.cast_vote(ws, b, 1, "v-a", 4, V.NONE)
    line = V.lineup(ws, b, n_boot=200)
    got = {(r["judge"], r["subset"]): (r["value"], r["n"], r["unit"], r["items"]) for r in line["rows"]}
    # the class voted on items 0 and 1 only: each machine also on those two, the rows to compare with the class
    assert got == {("humans", "voted"): (0.5, 2, "vote", 2),
                   ("E", "all"): (1.0, 3, "reconstruction", 3), ("E", "voted"): (1.0, 2, "reconstruction", 2),
                   ("dlib", "all"): (pytest.approx(2 / 3), 3, "reconstruction", 3),
                   ("dlib", "voted"): (1.0, 2, "reconstruction", 2)}
    assert next(r for r in line["rows"] if r["judge"] == "humans")["votes"] == 2
    assert line["k"] == 4 and line["chance"] == 0.25 and line["missing"] == {}
    # another round draws other line-ups: the picks follow them (dlib's 'wrong' face may not be in them)
    V.reset_round(ws, rid, V.Teacher.owner(), k=2)
    p = L.picks(L.stored(ws, rid), b, 2, 2)
    assert p["E"] == b.identity and all(c in b.candidates(i, 2, 2) for i, c in enumerate(p["dlib"]))


def test_a_round_from_before_teachers_rounds_waits_for_the_teacher(ws):
    """A vote_rounds row written by the earlier schema (round, reset; no k, no state): no votes until opened."""
    rid, _ = fake_attack(ws)
    b = V.load_ballot(ws, rid)
    with ws._connect() as con:
        con.execute("CREATE TABLE vote_rounds (run TEXT PRIMARY KEY, round INTEGER NOT NULL, reset REAL)")
        con.execute("INSERT INTO vote_rounds (run, round, reset) VALUES (?, 3, 0)", (rid,))
    assert V.round_info(ws, rid) == {"round": 3, "k": None, "state": V.WAITING}  # columns added on first use
    with pytest.raises(ParamError, match="the teacher has not opened a round yet"):
        V.cast_vote(ws, b, 0, "v-a", 3, V.NONE)
    assert V.open_round(ws, b, 3, V.Teacher.owner()) == {"round": 4, "k": 3, "state": V.OPEN}
    V.cast_vote(ws, b, 0, "v-a", 3, V.NONE)
