"""scripts/make_demo.py's export (`--from FULL DEFENDED [LAYERS] --workspace WS`) on the tiny UI world
(tests/ui_world.py: synthetic 32 px faces, tiny targets, GMI attacks judged by E and by dlib): demo.json carries
dlib's verdict and whom it named beside E's on every shown face, dlib's top-1 for both models, the paired
difference under both judges and chance; the files are reproducible; a run without dlib's verdicts is refused
in one line and leaves the existing demo whole; the attack is the runs' own (IF-GMI here as well as GMI)."""
from __future__ import annotations

import importlib.util
import json

import pytest

from mivis.evaluation import dlib_judge

pytestmark = pytest.mark.skipif(not dlib_judge.available(),
                                reason=f"the dlib judge is not installed ({dlib_judge.INSTALL})")

from test_app import ROOT  # noqa: E402


def _script():
    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "scripts" / "make_demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def world(tmp_path):
    from ui_world import world_copy

    from mivis.runs import Workspace
    w = world_copy(tmp_path / "ws")
    return w, Workspace(w["path"])


def _files(folder) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def test_export_carries_dlib_beside_e_and_is_reproducible(world, tmp_path):
    from mivis.data import load_split
    from mivis.evaluation import compare_runs
    w, ws = world
    md = _script()
    out = tmp_path / "demo"
    assert md.main(["--workspace", str(w["path"]), "--out", str(out), "--from", w["attack_full"], w["attack_rolss"],
                    w["layers"]]) == 0
    spec = json.loads((out / "demo.json").read_text())
    names = load_split(ws.get(w["attack_full"]).config["data"]).private_names
    assert spec["title"].startswith("GMI against a ResNet-18") and spec["attack"] == "gmi"
    assert spec["judges"]["lead"] == "dlib" and spec["chance"] == pytest.approx(1 / 6, abs=1e-4)
    evs = {k: json.loads(ws.get(w[k]).file("evaluation.json").read_text()) for k in ("attack_full", "attack_rolss")}
    # dlib's top-1 of each model, as stored with the run, beside E's
    m = {it["label"]: it["value"] for it in spec["metrics"]}
    for who, k in (("full", "attack_full"), ("RoLSS", "attack_rolss")):
        stored = evs[k]["extra_judges"]["dlib"]["attack_acc_top1"]
        assert m[f"Attack acc. top-1 by dlib ({who})"]["value"] == pytest.approx(stored["value"], abs=1e-4)
        assert m[f"Attack acc. top-1 by dlib ({who})"]["n"] == 3
        assert m[f"Attack acc. top-1 by E ({who})"] == evs[k]["metrics"]["attack_acc_top1"]
    labels = [it["label"] for it in spec["metrics"]]
    assert labels.index("Attack acc. top-1 by dlib (full)") < labels.index("Attack acc. top-1 by E (full)")
    # the paired difference full - RoLSS under each judge, as `evaluate compare --by` gives it
    for key, metric in (("paired", "attack_acc_top1"), ("paired_dlib", "attack_acc_top1@dlib")):
        d = compare_runs(ws, w["attack_full"], w["attack_rolss"], metric)
        assert spec[key]["metric"] == metric and spec[key]["n"] == 3 and spec[key]["resolved"] == d["resolved"]
        assert spec[key]["value"] == pytest.approx(d["value"], abs=1e-4)
        assert spec[key]["lo"] == pytest.approx(d["lo"], abs=1e-4)
    # every shown face: dlib's verdict and whom it named, consistent with each other and with the run's own
    assert [p["identity"] for p in spec["pairs"]] == [names[c] for c in (0, 1, 2)]
    for c, p in enumerate(spec["pairs"]):
        for v, k in ((p, "attack_full"), (p["defended"], "attack_rolss")):
            rows = evs[k]["per_reconstruction"]
            best = max((r for r in rows if r["identity"] == c), key=lambda r: r["p_target"])
            dv = v["dlib"]
            assert dv["predicted"] in names and dv["correct"] == (dv["predicted"] == p["identity"])
            assert dv["correct"] == best["top1@dlib"]
            assert v["correct"] == best["eval_top1"] and v["predicted"] == names[best["eval_pred"]]
            for verdict in (v, dv):  # a wrong verdict shows the named person's real face
                if not verdict["correct"]:
                    assert verdict["predicted_real"] == f"judged_{verdict['predicted']}.png"
                    assert (out / verdict["predicted_real"]).exists()
                else:
                    assert "predicted_real" not in verdict
    for h in spec["histograms"]:
        assert len(h["correct_dlib"]) == len(h["correct"]) == len(h["likelihood"]) == 6
    assert spec["fisher"]["layers"]
    # no run ids (they carry their creation time) and no leftovers of the staging folder
    text = (out / "demo.json").read_text()
    assert not any(w[k] in text for k in ("attack_full", "attack_rolss", "full", "rolss", "eval", "layers"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".demo-")]
    # reproducible: exporting again gives the same bytes, file for file
    first = _files(out)
    assert md.main(["--workspace", str(w["path"]), "--out", str(out), "--from", w["attack_full"], w["attack_rolss"],
                    w["layers"]]) == 0
    assert _files(out) == first


def test_export_refuses_runs_without_dlib_and_keeps_the_old_demo(world, tmp_path, capsys):
    from mivis.runs import Run
    w, ws = world
    md = _script()
    out = tmp_path / "demo"
    assert md.main(["--workspace", str(w["path"]), "--out", str(out), "--from", w["attack_full"],
                    w["attack_rolss"]]) == 0
    before = _files(out)
    ev = json.loads(ws.get(w["attack_rolss"]).file("evaluation.json").read_text())
    del ev["extra_judges"]["dlib"]
    for r in ev["per_reconstruction"]:
        del r["top1@dlib"]
    Run(ws, w["attack_rolss"]).write_json("evaluation.json", ev)  # as an attack made before dlib was installed
    capsys.readouterr()
    assert md.main(["--workspace", str(w["path"]), "--out", str(out), "--from", w["attack_full"],
                    w["attack_rolss"]]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: attack run {w['attack_rolss']} has no dlib verdicts; add them with "
                   f"`python -m mivis evaluate rejudge --dlib {w['attack_rolss']}`")
    assert _files(out) == before


def test_export_of_ifgmi_runs_names_the_attack_and_refuses_mixed_attacks(world, tmp_path, capsys):
    from ui_world import ATTACK

    from mivis.attacks import attack_run
    w, ws = world
    md = _script()
    params = {**ATTACK, "restarts": 1, "iterations": 4, "pool": 10, "seed": 0}
    runs = [attack_run("ifgmi", ws.get(w[k]).id, w["prior"], params=params, eval_run=w["eval"], workspace=ws,
                       n_boot=200).id for k in ("full", "rolss")]
    out = tmp_path / "demo"
    assert md.main(["--workspace", str(w["path"]), "--out", str(out), "--from", *runs]) == 0
    spec = json.loads((out / "demo.json").read_text())
    assert spec["title"].startswith("IF-GMI against") and spec["settings"]["attack"] == "ifgmi"
    assert "fisher" not in spec and all("dlib" in p and "dlib" in p["defended"] for p in spec["pairs"])
    capsys.readouterr()
    assert md.main(["--workspace", str(w["path"]), "--out", str(out), "--from", runs[0], w["attack_rolss"]]) == 2
    assert "ran different attacks (ifgmi vs gmi)" in capsys.readouterr().err


def test_build_refuses_an_unknown_attack_before_training():
    from mivis.params import ParamError
    md = _script()
    with pytest.raises(ParamError, match="--attack: 'nope' is not one of .*ifgmi"):
        md.attack_params("nope", None, None, "cpu")
    p = md.attack_params("ifgmi", None, 40, "cpu")
    assert p["restarts"] == 5 and p["iterations"] == 40 and p["seed"] == 0
