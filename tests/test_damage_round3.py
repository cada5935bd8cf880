"""Issue 25, one regression test per cause of the third hostile-input corpus: writes outside the workspace,
late refusals and tracebacks. Each reproduces the input and checks a one-line refusal with nothing lost
(no run created, no file written where it must not be).

Fast: classifier runs are built by hand from an untrained model (no training), synthetic 32 px data."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from mivis.params import ParamError
from mivis.runs import DamagedRun, RunError, Workspace

DATA = {"dataset": "synthetic", "n_private": 4, "image_size": 32, "test_per_identity": 1}


def classifier_run(ws: Workspace, kind: str = "target", arch: str = "resnet18", data: dict | None = None):
    """A finished classifier run laid out as train_run writes it, with untrained weights (no compute)."""
    from mivis.data import load_split
    from mivis.models import model_config, model_from_config
    split = load_split(data or DATA)
    c, h, _ = split.image_shape
    mcfg = model_config(arch, split.num_classes, c, h)
    model = model_from_config(mcfg)
    r = ws.create(kind, {"role": kind, "train": {"arch": arch, "seed": 0}, "data": split.config, "model": mcfg},
                  seed=0, data_fingerprint=split.fingerprint, name=f"{kind} {arch}")
    r.write_json("split.json", split.record())
    r.save_weights(model.state_dict(), {"arch": arch, "model_config": mcfg, "run": r.id})
    r.finish({"natural_acc": 0.5})
    return ws.get(r.id)


def cli(ws_path, *argv) -> tuple[int, str, str]:
    import contextlib
    import io
    from mivis.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["--workspace", str(ws_path), *map(str, argv)])
    return rc, out.getvalue(), err.getvalue()


def one_line_refusal(rc: int, err: str, *words: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("busy machine")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (rc, err)
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


def grid(name, **base) -> dict:
    return {"name": name, "base": {"data": DATA, "target": {"arch": "resnet18", "epochs": 1},
                                   "eval": {"arch": "vgg11", "epochs": 1}, "prior": {"shipped": "orl32-gmi"},
                                   "attack": {"name": "gmi", "iterations": 2, "restarts": 1}, **base}}


# --- 1. names that become file names; every file written for a workspace lies inside it ------------------------
@pytest.mark.parametrize("name, words", [("../../x/pwn", "path"), ("/tmp/abs-pwn", "path"), ("a/b", "path"),
                                         ("a" * 300, "300 characters"), ("a\x00b", "control character"),
                                         (".hidden", "start with"), ("", "empty"), ("x y", "character"),
                                         (5, "not a name")])
def test_a_sweep_name_that_is_a_path_too_long_or_has_a_nul_is_refused_before_a_file_is_written(
        ws, tmp_path, name, words):
    from mivis.sweep import plan_sweep
    with pytest.raises(ParamError, match=words) as e:
        plan_sweep(grid(name), ws)
    assert "\n" not in str(e.value)
    p = tmp_path / "g.json"
    p.write_text(json.dumps(grid(name)))
    rc, _, err = cli(ws.path, "sweep", p, "--estimate")
    one_line_refusal(rc, err, "grid name")
    assert not (ws.path / "sweeps").exists() and not list(tmp_path.rglob("pwn*")) and not Path("/tmp/abs-pwn.json").exists()


def test_sweep_summaries_are_written_and_read_only_inside_the_workspace(ws, tmp_path):
    from mivis.sweep.runner import load_summary, write_summary
    for bad in ("../../x/pwn", str(tmp_path / "abs")):
        with pytest.raises(ParamError):
            write_summary(ws, {"name": bad, "trials": []})
        with pytest.raises(ParamError):
            load_summary(ws, bad)
    assert not list(tmp_path.rglob("pwn*")) and not list(tmp_path.rglob("abs*"))
    (ws.path / "sweeps").symlink_to(tmp_path)  # a sweeps folder that is a link to elsewhere: not written through
    with pytest.raises(ParamError, match="resolves outside"):
        write_summary(ws, {"name": "ok", "trials": []})
    assert not (tmp_path / "ok.json").exists()


def test_report_refuses_a_sweep_name_that_is_a_path(ws):
    (ws.path.parent / "outside.json").write_text(json.dumps({"name": "x", "trials": []}))  # a summary elsewhere
    rc, _, err = cli(ws.path, "report", "../../outside", "--out", ws.path.parent / "r" / "f.md")
    one_line_refusal(rc, err, "sweep name", "is a path")
    assert not (ws.path.parent / "r").exists()


def test_a_refused_upload_is_removed_from_the_uploads_folder_and_a_used_one_kept(ws):
    import pickle

    from mivis.uploads import kept_if_used
    from mivis.weights import WeightsError, load_tensors
    raw = pickle.dumps({"w": [1, 2, 3]})
    with pytest.raises(WeightsError, match="pickle"):
        with kept_if_used(ws, raw) as path:
            assert path.parent == ws.path / "uploads" and path.is_file()
            load_tensors(path)
    assert list((ws.path / "uploads").iterdir()) == []
    from safetensors.torch import save as st_save
    good = st_save({"w": torch.ones(2)})
    with kept_if_used(ws, good) as path:
        load_tensors(path)
    kept = list((ws.path / "uploads").iterdir())
    assert kept == [path]
    with pytest.raises(ParamError):  # the same file refused later (another setting): the earlier copy stays
        with kept_if_used(ws, good):
            raise ParamError("refused")
    assert path.is_file()


# --- 3. every traceback cause: one line ------------------------------------------------------------------------
def _nan_checkpoint(path: Path, value: float = float("nan")) -> Path:
    import timm
    from safetensors.torch import save_file
    sd = {k: v.clone() for k, v in timm.create_model("resnet18", pretrained=False).state_dict().items()}
    sd["layer1.0.conv1.weight"][0, 0, 0, 0] = value
    save_file(sd, str(path))
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_init_weights_are_refused_before_a_run_exists(ws, tmp_path, value):
    from mivis.train import train_run
    from mivis.weights import WeightsError
    p = _nan_checkpoint(tmp_path / "bad.safetensors", value)
    with pytest.raises(WeightsError, match="NaN or infinite"):
        train_run("target", {"arch": "resnet18", "epochs": 1, "init_weights": str(p), "device": "cpu"}, DATA,
                  workspace=ws)
    assert ws.list() == []
    rc, _, err = cli(ws.path, "train", "--init-weights", p, "--epochs", "1", "--dataset", "synthetic",
                     "--n-private", "4", "--image-size", "32", "--no-size-check")
    one_line_refusal(rc, err, "NaN or infinite", "layer1.0.conv1.weight")
    assert ws.list() == []


def test_a_binary_class_order_file_is_one_line(ws, tmp_path):
    from mivis.importing import read_class_order
    p = tmp_path / "order.bin"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ParamError, match="not a text file"):
        read_class_order(str(p))
    rc, _, err = cli(ws.path, "import-model", tmp_path / "none.safetensors", "--arch", "resnet18",
                     "--class-order", p, "--dataset", "synthetic", "--n-private", "4", "--image-size", "32")
    one_line_refusal(rc, err, "class order", "not a text file")
    assert ws.list() == []


GARBAGE_FINDINGS = {"not JSON": b"{junk", "binary": bytes(range(256)), "a number": b"5", "an object": b'{"a": 1}',
                    "a list of numbers": b"[1, 2]", "rows without fields": b'[{"arch": "x"}]',
                    "a malformed drop": json.dumps([{"image_size": 32, "arch": "resnet18", "attack": "gmi",
                                                     "defense": "skips", "seeds": [0], "top1": {"value": 0.5},
                                                     "vs_none": {"drop": 7}}]).encode()}


@pytest.mark.parametrize("case", list(GARBAGE_FINDINGS))
def test_survival_and_compare_with_refuse_garbage_or_non_object_json_in_one_line(ws, tmp_path, case):
    bad = tmp_path / "bad.json"
    bad.write_bytes(GARBAGE_FINDINGS[case])
    good = Path(__file__).resolve().parent.parent / "docs" / "v2" / "findings.json"
    (tmp_path / "r.md").write_text("# report\n\ntext\n")
    (tmp_path / "r.json").write_bytes(good.read_bytes())
    before = (tmp_path / "r.md").read_bytes()
    rc, _, err = cli(ws.path, "evaluate", "survival", tmp_path / "r.md", bad)
    one_line_refusal(rc, err, "bad.json", "findings.json")
    (tmp_path / "r.json").write_bytes(GARBAGE_FINDINGS[case])  # the earlier report's own findings damaged
    rc, _, err = cli(ws.path, "evaluate", "survival", tmp_path / "r.md", good)
    one_line_refusal(rc, err, "r.json")
    assert (tmp_path / "r.md").read_bytes() == before  # the report was not touched
    rc, _, err = cli(ws.path, "report", "nosweep", "--out", tmp_path / "out" / "f.md", "--compare-with", bad)
    one_line_refusal(rc, err, "bad.json")  # refused before the report is built, not after
    assert not (tmp_path / "out").exists()


def test_the_shipped_findings_pass_the_check(tmp_path):
    from mivis.report.versions import read_findings
    docs = Path(__file__).resolve().parent.parent / "docs"
    files = sorted(docs.rglob("findings.json"))
    assert files
    for f in files:
        assert read_findings(f)


def test_a_binary_report_markdown_is_one_line(ws, tmp_path):
    good = Path(__file__).resolve().parent.parent / "docs" / "v2" / "findings.json"
    (tmp_path / "r.md").write_bytes(b"\xff\xfe\x00 binary")
    (tmp_path / "r.json").write_bytes(good.read_bytes())
    rc, _, err = cli(ws.path, "evaluate", "survival", tmp_path / "r.md", good)
    one_line_refusal(rc, err, "r.md", "UTF-8")


def test_report_out_naming_a_folder_is_refused_before_anything_is_built(ws, tmp_path):
    (tmp_path / "folder").mkdir()
    (ws.path / "sweeps").mkdir()
    (ws.path / "sweeps" / "s.json").write_text(json.dumps({"name": "s", "trials": []}))
    rc, _, err = cli(ws.path, "report", "s", "--out", tmp_path / "folder")
    one_line_refusal(rc, err, "is a folder")
    (tmp_path / "f2").mkdir()
    (tmp_path / "f2" / "figures").write_text("a file where the figures folder goes")
    rc, _, err = cli(ws.path, "report", "s", "--out", tmp_path / "f2" / "r.md")
    one_line_refusal(rc, err, "in the way")
    assert list((tmp_path / "folder").iterdir()) == [] and not (tmp_path / "f2" / "r.md").exists()


@pytest.mark.parametrize("content, words", [(b"{junk", "not JSON"), (b"\xff\xfe", "not JSON"),
                                            (b"[]", "no list of trials"), (b'{"trials": [5]}', "trial 1"),
                                            (b'{"trials": [{"complete": true, "runs": {}}]}', "trial 1 lacks")])
def test_a_corrupt_sweep_summary_is_one_line(ws, tmp_path, content, words):
    (ws.path / "sweeps").mkdir()
    (ws.path / "sweeps" / "s.json").write_bytes(content)
    rc, _, err = cli(ws.path, "report", "s", "--out", tmp_path / "r.md")
    one_line_refusal(rc, err, "sweeps/s.json", "damaged", words)
    assert not (tmp_path / "r.md").exists()


@pytest.mark.parametrize("config", ["x", "[1]", "{}", '{"model": 5, "data": {}}'])
def test_a_registry_row_whose_config_is_damaged_is_refused_by_every_command(ws, tmp_path, config):
    target = classifier_run(ws)
    ev = classifier_run(ws, "eval", "vgg11")
    from mivis.priors import import_prior
    prior = import_prior("orl32-gmi", ws)
    with sqlite3.connect(ws.db_path) as con:
        con.execute("UPDATE runs SET config = ? WHERE id = ?", (config, target.id))
    n_runs = len(ws.list())
    tiny = ["--dataset", "synthetic", "--n-private", "4", "--image-size", "32"]
    commands = [["attack", "--target", target.id, "--prior", prior.id, "--eval", ev.id, "--iterations", "2",
                 "--restarts", "1", "--identities", "0", "--device", "cpu", "--no-dlib"],
                ["attack", "--target", target.id, "--estimate", "--no-dlib"],
                ["analyze", "layers", "--target", target.id, "--device", "cpu"],
                ["export-model", target.id, tmp_path / "x.safetensors"],
                ["train", "--init-run", target.id, "--epochs", "1", "--no-size-check", *tiny],
                ["prior", "train", "--type", "kedmi", "--target", target.id, "--preset", "smoke"],
                ["evaluate", "verify-dlib", "--eval", target.id]]
    for cmd in commands:
        rc, _, err = cli(ws.path, *cmd)
        if "verify-dlib" in cmd and "dlib" in err and target.id not in err:
            continue  # dlib not installed here: refused for that before the run is read
        one_line_refusal(rc, err, target.id, "damaged")
    p = tmp_path / "g.json"
    g = grid("onrun", target={"run": target.id})
    p.write_text(json.dumps(g))
    rc, _, err = cli(ws.path, "sweep", p, "--estimate")
    one_line_refusal(rc, err, target.id, "damaged")
    assert len(ws.list()) == n_runs and not (tmp_path / "x.safetensors").exists()
    rc, out, _ = cli(ws.path, "runs", "list")
    if config in ("x", "[1]"):  # not a JSON object: listed as DAMAGED, shown and deleted on request
        assert rc == 0 and "DAMAGED" in out
        with pytest.raises(DamagedRun, match="config"):
            ws.get(target.id)
        assert cli(ws.path, "runs", "show", target.id)[0] == 0
    assert cli(ws.path, "runs", "delete", target.id)[0] == 0 and not ws.exists(target.id)


def test_judge_tally_on_a_missing_workspace_creates_nothing(tmp_path):
    missing = tmp_path / "no-such-workspace"
    for cmd in (["judge", "tally", "demo"], ["judge", "reset", "demo"], ["runs", "show", "x"],
                ["evaluate", "show", "x"]):
        rc, _, err = cli(missing, *cmd)
        one_line_refusal(rc, err, "no mivis workspace")
    assert not missing.exists()


def test_be_the_judge_says_in_one_line_that_its_run_was_deleted(ws):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest
    r = ws.create("attack", {"data": DATA, "attack": {"name": "gmi", "params": {"seed": 0}}, "target_run": None},
                  name="hand-made attack")
    r.save_weights({"x": torch.rand(4, 1, 32, 32) * 2 - 1, "y": torch.tensor([0, 1, 2, 3]),
                    "p_target": torch.rand(4)}, name="reconstructions.safetensors")
    r.finish({})
    app = str(Path(__file__).resolve().parent.parent / "app.py")
    at = AppTest.from_file(app, default_timeout=120)
    at.query_params["run"] = r.id
    at.switch_page("pages/judge.py")
    at.run()
    assert not at.exception and not at.warning
    ws.delete(r.id)
    at = AppTest.from_file(app, default_timeout=120)  # the session that was judging it, on its next rerun
    at.session_state["judge:run"] = r.id
    at.switch_page("pages/judge.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = [w.value for w in at.warning]
    assert len(said) == 1 and "was deleted" in said[0] and "\n" not in said[0]


# --- late refusals moved early; messages that say what is true -------------------------------------------------
def _damage_weights(path: Path, how: str) -> None:
    import pickle

    from mivis.weights import load_tensors, save_weights
    if how == "pickle":
        path.write_bytes(pickle.dumps({"w": 1}))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "NaN":
        t, meta = load_tensors(path)
        k = next(k for k, v in t.items() if v.is_floating_point() and "weight" in k)
        t[k] = torch.full_like(t[k], float("nan"))
        save_weights(path, t, meta)
    elif how == "deleted folder":
        import shutil
        shutil.rmtree(path.parent)


@pytest.mark.parametrize("how, words", [("pickle", "pickle"), ("truncated", "truncated"), ("NaN", "NaN"),
                                        ("deleted folder", "cannot read")])
def test_a_sweep_target_run_that_cannot_load_is_refused_before_any_step_runs(ws, how, words, monkeypatch):
    from mivis.sweep import plan_sweep, run_sweep
    target = classifier_run(ws)
    _damage_weights(target.dir / "weights.safetensors", how)
    n = len(ws.list())
    trained = []
    monkeypatch.setattr("mivis.train.Trainer.fit", lambda self: trained.append(1) or [])
    with pytest.raises(DamagedRun, match=words) as e:
        plan = plan_sweep(grid("onrun", target={"run": target.id}), ws)
        run_sweep(plan, ws)
    assert target.id in str(e.value) and "\n" not in str(e.value)
    assert trained == [] and len(ws.list()) == n  # the evaluation model was not trained first


def test_a_sweep_checks_init_runs_and_init_weights_before_any_step_runs(ws, tmp_path):
    from mivis.sweep import plan_sweep
    from mivis.weights import WeightsError
    public = classifier_run(ws, "public")
    _damage_weights(public.dir / "weights.safetensors", "NaN")
    with pytest.raises(DamagedRun, match="NaN"):
        plan_sweep(grid("init", target={"arch": "resnet18", "epochs": 1, "init_run": public.id}), ws)
    with pytest.raises(ParamError, match="no such run"):
        plan_sweep(grid("init", target={"arch": "resnet18", "epochs": 1,
                                        "init_run": "public-20260101-000000-abcdef"}), ws)
    vgg = classifier_run(ws, "public", "vgg11")
    with pytest.raises(ParamError, match="vgg11, not a resnet18"):
        plan_sweep(grid("init", target={"arch": "resnet18", "epochs": 1, "init_run": vgg.id}), ws)
    p = _nan_checkpoint(tmp_path / "nan.safetensors")
    with pytest.raises(WeightsError, match="NaN"):
        plan_sweep(grid("init", target={"arch": "resnet18", "epochs": 1, "init_weights": str(p)}), ws)


def test_a_sweep_target_config_without_a_model_names_the_damage_not_none_px(ws):
    from mivis.sweep import plan_sweep
    target = classifier_run(ws)
    with sqlite3.connect(ws.db_path) as con:
        con.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps({"data": DATA}), target.id))
    with pytest.raises(DamagedRun) as e:
        plan_sweep(grid("onrun", target={"run": target.id}), ws)
    assert "None px" not in str(e.value) and "cannot be rebuilt" in str(e.value)


@pytest.mark.parametrize("prior, words", [({"shipped": ""}, "prior.shipped"), ({"shipped": 5}, "prior.shipped"),
                                          ({"shipped": "no-such-prior"}, "neither a shipped prior"),
                                          ("orl32-gmi", "not a table")])
def test_a_sweep_prior_message_says_what_is_wrong_with_the_prior_it_names(ws, prior, words):
    from mivis.sweep import plan_sweep
    g = grid("p")
    g["base"]["prior"] = prior
    with pytest.raises(ParamError, match=words) as e:
        plan_sweep(g, ws)
    assert "needs a prior: set prior.shipped" not in str(e.value)


def test_runs_delete_still_works_and_refuses_what_it_refused(ws):
    a = classifier_run(ws)
    kid = ws.create("attack", {"x": 1}, parents=[a.id])
    kid.finish({})
    with pytest.raises(RunError, match="cascade"):
        ws.delete(a.id)
    assert ws.delete(a.id, cascade=True) == [a.id, kid.id]
