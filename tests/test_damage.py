"""Issue 14, one regression test per numbered cause: each reproduces the hostile or careless input
and checks that it is now refused (or shown as damaged) in one line, with nothing else lost.

Fast: fake runs written by hand (no training), synthetic data, the shipped 32 px prior."""
from __future__ import annotations

import io
import json
import shutil
import sqlite3
import struct
import threading
import time
from pathlib import Path

import pytest
import torch

from mivis.jobs import JOB_KINDS, JobManager, job_kind
from mivis.params import ParamError
from mivis.runs import DamagedRun, RegistryError, RunError, Workspace

ROOT = Path(__file__).resolve().parent.parent
GATE = threading.Event()

if "damage_hold" not in JOB_KINDS:
    @job_kind("damage_hold", validate=lambda p, ws: {**p, "target_run": ws.get(p["target_run"]).id})
    def _hold(params, ctx):
        """Holds until GATE opens (the test controls timing), then reads the run it needs."""
        while not GATE.wait(0.01):
            ctx.reporter.check()
        return {"seen": ctx.workspace.get(params["target_run"]).id}


def fake_run(ws: Workspace, kind: str = "target", *, parents=(), name: str = "", files: dict | None = None,
             metrics: dict | None = None, status: str = "done"):
    r = ws.create(kind, {"kind": kind, "name": name}, parents=parents, name=name or kind)
    for fname, data in (files or {}).items():
        r.write_bytes(fname, data if isinstance(data, bytes) else json.dumps(data).encode())
    if status == "done":
        r.finish(metrics or {"natural_acc": 0.5})
    else:
        r.fail("failed on purpose", status=status)
    return ws.get(r.id)


def png_bytes(w: int = 8, h: int = 8) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", (w, h), 128).save(buf, format="PNG")
    return buf.getvalue()


def tree_digest(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and not p.name.startswith("mivis.sqlite")}


# --- 1. a run that a queued or running job needs cannot be deleted ------------------------------------------
def test_delete_is_refused_while_a_job_needs_the_run_and_names_the_job(ws):
    from mivis.cli import main
    target = fake_run(ws)
    GATE.clear()
    m = JobManager(ws, devices=["cpu"], flush_interval=0.05)
    try:
        running = m.submit("damage_hold", {"target_run": target.id}, session="a")
        queued = m.submit("damage_hold", {"target_run": target.id}, session="b")
        deadline = time.monotonic() + 10
        while m.get(running.id).status != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        with sqlite3.connect(ws.db_path) as con:  # the job recorded what it needs at submit
            assert json.loads(con.execute("SELECT needs FROM jobs WHERE id = ?", (running.id,)).fetchone()[0]) \
                == [target.id]
        with pytest.raises(RunError, match=running.id):
            ws.delete(target.id)
        assert main(["--workspace", str(ws.path), "runs", "delete", target.id]) == 2
        assert ws.exists(target.id) and target.dir.is_dir()
        m.cancel(running.id)
        GATE.set()
        assert m.wait(running.id, 10).status in ("done", "cancelled")
        assert m.wait(queued.id, 10).status == "done"  # it found its run: nothing was lost
        ws.delete(target.id)  # no job needs it any more
        assert not ws.exists(target.id)
    finally:
        GATE.set()
        m.shutdown(wait=5)


def test_a_job_cannot_be_queued_on_a_run_deleted_meanwhile(ws):
    target = fake_run(ws)
    m = JobManager(ws, devices=["cpu"])
    try:
        entry = JOB_KINDS.get("damage_hold")
        params = entry.meta["validate"]({"target_run": target.id}, ws)
        ws.delete(target.id)
        with pytest.raises(ParamError, match="deleted"):  # the submit re-checks inside its transaction
            with pytest.MonkeyPatch.context() as mp:
                mp.setitem(entry.meta, "validate", lambda p, w: params)
                m.submit("damage_hold", {"target_run": target.id}, session="s")
        assert m.list() == []
    finally:
        m.shutdown(wait=5)


def test_runs_that_finished_runs_depend_on_need_a_cascade(ws):
    from mivis.cli import main
    parent = fake_run(ws)
    child = fake_run(ws, "attack", parents=[parent.id])
    grandchild = fake_run(ws, "analysis", parents=[child.id])
    with pytest.raises(RunError, match="cascade"):
        ws.delete(parent.id)
    assert main(["--workspace", str(ws.path), "runs", "delete", parent.id]) == 2
    assert {r.id for r in ws.list()} == {parent.id, child.id, grandchild.id}
    assert main(["--workspace", str(ws.path), "runs", "delete", parent.id, "--cascade"]) == 0
    assert ws.list() == [] and not any(ws.runs_dir.iterdir())
    # a failed child does not hold its parent
    p2 = fake_run(ws)
    fake_run(ws, "attack", parents=[p2.id], status="failed")
    assert ws.delete(p2.id) == [p2.id]


# --- 2. a damaged workspace: named, one line, the rest works --------------------------------------------------
def test_damaged_artifacts_are_damaged_runs_naming_the_run_and_the_file(ws):
    good = fake_run(ws, files={"history.json": [{"epoch": 1, "loss": 1.0}], "a.png": png_bytes()})
    assert good.read_json("history.json")[0]["epoch"] == 1 and good.read_image("a.png")
    cases = {
        "history.json": (b"[{]", "not valid JSON"),
        "reconstructions.png": (b"\x89PNG junk", "not a readable image"),
        "evaluation.json": (b'{"metrics": 5}', "evaluation.json has no 'judge'"),
        "prior.json": (b"\xff\xfe", "not valid JSON"),
    }
    for name, (data, words) in cases.items():
        bad = fake_run(ws, files={name: data})
        read = bad.read_image if name.endswith(".png") else bad.read_json
        with pytest.raises(DamagedRun, match=words) as e:
            read(name)
        assert e.value.run_id == bad.id and str(e.value).startswith(f"run {bad.id} is damaged: {name}")
    with pytest.raises(DamagedRun, match="history.json is missing"):
        fake_run(ws).read_json("history.json")
    assert fake_run(ws).read_json("history.json", optional=True) is None


def test_reconstructions_without_x_or_y_are_a_damaged_run(ws):
    from safetensors.torch import save_file
    r = fake_run(ws, "attack")
    save_file({"restart": torch.zeros(3)}, str(r.dir / "reconstructions.safetensors"))
    with pytest.raises(DamagedRun, match="no tensor 'x', 'y'"):
        r.read_tensors("reconstructions.safetensors")
    save_file({"x": torch.zeros(3, 1, 4, 4), "y": torch.zeros(2)}, str(r.dir / "reconstructions.safetensors"))
    with pytest.raises(DamagedRun, match="inconsistent shapes"):
        r.read_tensors("reconstructions.safetensors")


def test_a_junk_prior_json_or_a_deleted_prior_folder_is_a_damaged_run(ws):
    from mivis.priors import import_prior, load_prior
    prior = import_prior("orl32-gmi", ws)
    load_prior(ws, prior.id)
    (prior.dir / "prior.json").write_text("{junk")
    with pytest.raises(DamagedRun, match="prior.json is not valid JSON"):
        load_prior(ws, prior.id)
    shutil.rmtree(prior.dir)
    with pytest.raises(DamagedRun, match="prior.json is missing"):
        load_prior(ws, prior.id)


def test_a_damaged_registry_column_is_listed_as_damaged(ws, capsys):
    from mivis.cli import main
    a, b = fake_run(ws, name="a"), fake_run(ws, name="b")
    with sqlite3.connect(ws.db_path) as con:
        con.execute("UPDATE runs SET metrics = 'x', parents = '{' WHERE id = ?", (a.id,))
    recs = {r.id: r for r in ws.list()}
    assert recs[a.id].metrics == {} and "metrics" in " ".join(recs[a.id].damage)
    assert recs[b.id].damage == [] and recs[b.id].metrics == {"natural_acc": 0.5}
    assert main(["--workspace", str(ws.path), "runs", "list"]) == 0
    out = capsys.readouterr().out
    assert a.id in out and "DAMAGED" in out and "natural_acc=0.500" in out


def test_a_garbage_registry_is_one_clear_error(tmp_path, capsys):
    from mivis.cli import main
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "mivis.sqlite").write_bytes(b"this is not a database " * 100)
    with pytest.raises(RegistryError, match="not a database"):
        Workspace(tmp_path / "ws")
    assert main(["--workspace", str(tmp_path / "ws"), "runs", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mivis.sqlite" in err and "Traceback" not in err


def test_a_vanished_registry_is_reported_and_never_recreated_empty(ws):
    run = fake_run(ws)
    m = JobManager(ws, devices=["cpu"])
    try:
        ws.db_path.unlink()
        for p in Path(str(ws.db_path) + "-wal"), Path(str(ws.db_path) + "-shm"):
            p.unlink(missing_ok=True)
        with pytest.raises(RegistryError, match="vanished"):
            ws.list()
        with pytest.raises(RegistryError, match="vanished"):
            m.exists("job-20260101-000000-abcdef")  # a ?job= URL
        assert not ws.db_path.exists()  # no empty registry was started over the run folders
        with pytest.raises(RegistryError, match="1 run folder"):
            Workspace(ws.path)
        assert run.dir.is_dir()
    finally:
        m.shutdown(wait=5)


def test_damaged_job_rows_read_as_empty_and_a_tampered_job_id_is_no_path(ws):
    GATE.set()
    target = fake_run(ws)
    m = JobManager(ws, devices=["cpu"], flush_interval=0.05)
    try:
        j = m.submit("damage_hold", {"target_run": target.id}, session="s")
        assert m.wait(j.id, 10).status == "done"
        with sqlite3.connect(ws.db_path) as con:
            con.execute("UPDATE jobs SET params = 'x', progress = '{', result = '5', id = '../../../x' WHERE id = ?",
                        (j.id,))
            con.execute("UPDATE job_events SET data = '{'")
        rec = m.get("../../../x")
        assert rec.params == {} and rec.progress == {} and rec.result == {}
        assert m.jobs_dir.resolve() in rec.dir.resolve().parents
        assert m.events("../../../x") == []
    finally:
        m.shutdown(wait=5)


# --- 3. the URL cannot make the server read folders or expand huge ranges --------------------------------------
def test_data_folders_outside_the_allowed_roots_are_refused_alike(tmp_path, monkeypatch):
    from mivis.data import DataError, load_split
    monkeypatch.setenv("MIVIS_DATA_ROOTS", str(tmp_path / "data"))
    cache = tmp_path / "cache"
    monkeypatch.setenv("MIVIS_CACHE", str(cache))
    messages = []
    for outside in ("/etc", "/usr/include", "/no/such/folder", str(tmp_path / "data" / ".." / "x")):
        with pytest.raises(DataError) as e:
            load_split({"dataset": "folder", "data_dir": outside, "image_size": 32})
        messages.append(str(e.value))
    assert len(set(messages)) == 1 and "MIVIS_DATA_ROOTS" in messages[0]  # says nothing about the path
    assert not cache.exists() or not any(cache.rglob("*.npy"))
    with pytest.raises(DataError, match="allowed data root"):
        load_split({"dataset": "synthetic", "private_list": "/etc/hostname"})


def test_the_architecture_page_reads_a_data_folder_only_after_a_click(ws, tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from PIL import Image
    from streamlit.testing.v1 import AppTest

    from mivis import ui
    root = tmp_path / "faces"  # inside the tests' allowed data root
    for i in range(5):
        (root / f"p{i}").mkdir(parents=True)
        for j in range(4):
            Image.new("L", (20, 20), 30 * j + i).save(root / f"p{i}" / f"{j}.png")
    cache = tmp_path / "cache"
    monkeypatch.setenv("MIVIS_CACHE", str(cache))
    ui.shutdown_managers()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for k, v in {"dataset": "folder", "data_dir": str(root), "image_size": "32", "n_private": "2",
                 "test_per_identity": "1"}.items():
        at.query_params[k] = v
    at.switch_page("pages/architecture.py")
    try:
        at.run()
        assert not at.exception
        assert not list(cache.rglob("*.npy"))  # the URL alone read nothing
        assert any("Read this data folder" in e.value for e in at.error)
        at.button(key="architecture:read_folder").click().run()
        assert not at.exception
        assert list(cache.rglob("*.npy"))  # the click did
    finally:
        ui.shutdown_managers()


def test_identity_ranges_are_bounded_before_they_expand():
    from mivis.attacks.context import check_identities
    from mivis.params import Param
    p = Param("identities", "int_list", None, "ids", optional=True, min=0, max=39)
    t0 = time.monotonic()
    with pytest.raises(ParamError) as e:
        p.coerce("0-999999")
    assert time.monotonic() - t0 < 0.5 and len(str(e.value)) < 200
    assert p.coerce("0-3,7") == [0, 1, 2, 3, 7]
    unbounded = Param("identities", "int_list", None, "ids", optional=True)
    with pytest.raises(ParamError) as e:
        unbounded.coerce("0-999999")
    assert len(str(e.value)) < 200
    with pytest.raises(ParamError) as e:
        check_identities(list(range(5000)), 40)
    assert len(str(e.value)) < 200 and "4950 more" in str(e.value)


# --- 4. a tampered run id never leaves the workspace ----------------------------------------------------------
def test_a_tampered_run_id_never_touches_files_outside_the_workspace(ws, tmp_path, capsys):
    from mivis.cli import main
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    r = fake_run(ws)
    with sqlite3.connect(ws.db_path) as con:
        con.execute("UPDATE runs SET id = ? WHERE id = ?", ("../../victim", r.id))
    rec = ws.get("../../victim")
    assert rec.damage and ws.runs_dir.resolve() in rec.dir.resolve().parents
    with pytest.raises(DamagedRun, match="not a valid run id"):
        rec.read_json("config.json")
    assert main(["--workspace", str(ws.path), "runs", "delete", "../../victim"]) == 0
    assert "no file was touched" in capsys.readouterr().out
    assert (victim / "precious.txt").read_text() == "keep me" and r.dir.is_dir()
    with pytest.raises(RunError, match="not a valid run id"):
        ws.run_dir("../x")


# --- 5. hostile shipped-prior metadata ----------------------------------------------------------------------------
@pytest.mark.parametrize("net, words", [({"z_dim": 1e12}, "z_dim"), ({"z_dim": 10**12}, "out of range"),
                                        ({"channels": -1}, "channels"), ({"type": "evil"}, "not a prior type"),
                                        ({"img_size": "32"}, "img_size")])
def test_hostile_prior_metadata_is_refused_before_anything_is_built(ws, tmp_path, net, words):
    from mivis.priors import import_prior
    from mivis.priors.store import ASSETS
    from mivis.weights import WeightsError
    src = tmp_path / "evil"
    shutil.copytree(ASSETS / "orl32-gmi", src)
    info = json.loads((src / "prior.json").read_text())
    info["net"].update(net)
    (src / "prior.json").write_text(json.dumps(info))
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match=words):
        import_prior(src, ws)
    assert time.monotonic() - t0 < 5 and ws.list() == []


# --- 6. validation before a run exists -------------------------------------------------------------------------
def test_bad_init_weights_are_refused_at_submit_not_in_the_job(ws, tiny_data, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 10) + b'{"a": junk}')
    m = JobManager(ws, devices=["cpu"])
    try:
        with pytest.raises((ParamError, RunError, ValueError)):
            m.submit("train", {"role": "target", "train": {"arch": "resnet18", "epochs": 1, "device": "cpu",
                                                           "init_weights": str(bad)}, "data": tiny_data},
                     session="s")
        with pytest.raises(Exception, match="allowed data root"):
            m.submit("train", {"role": "target", "train": {"arch": "resnet18", "epochs": 1, "device": "cpu",
                                                           "init_weights": "/etc/hostname"}, "data": tiny_data},
                     session="s")
        assert m.list() == [] and ws.list() == []
    finally:
        m.shutdown(wait=5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_leaves_no_failed_run(ws, tiny_data, tiny_train):
    from mivis.train import train_run
    with pytest.raises(ParamError, match="CUDA"):
        train_run("target", {**tiny_train, "device": "cuda"}, tiny_data, workspace=ws)
    assert ws.list() == []


def test_unloadable_weights_are_refused_as_a_damaged_run_before_anything_is_created(ws):
    from mivis.priors import import_prior
    from mivis.checks import check_run_weights
    prior = import_prior("orl32-gmi", ws)
    check_run_weights(ws, prior.id)
    (prior.dir / "generator.safetensors").write_bytes(b"\x80\x04junk pickle")
    n = len(ws.list())
    with pytest.raises(DamagedRun, match="pickle"):
        check_run_weights(ws, prior.id)
    assert len(ws.list()) == n


# --- 7. other tracebacks: one line each -----------------------------------------------------------------------------
def test_other_bad_inputs_are_one_line_errors(ws, tmp_path, capsys):
    from mivis.cli import main
    from mivis.data import DataError
    from mivis.data._folder import read_identity_list
    from mivis.data._images import MAX_PIXELS, ImageRefused, open_image
    from mivis.priors import import_prior
    from mivis.weights import WeightsError, load_into, save_weights
    prior = import_prior("orl32-gmi", ws)
    assert main(["--workspace", str(ws.path), "prior", "export", prior.id, "/proc/x"]) == 2
    assert main(["--workspace", "/etc/passwd", "runs", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err
    (tmp_path / "bin.txt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match="UTF-8"):
        read_identity_list(tmp_path / "bin.txt")
    net = torch.nn.Linear(2, 2)
    save_weights(tmp_path / "nan.safetensors", {"weight": torch.full((2, 2), float("nan")), "bias": torch.zeros(2)})
    with pytest.raises(WeightsError, match="NaN"):
        load_into(net, tmp_path / "nan.safetensors")
    from PIL import Image
    side = int(MAX_PIXELS ** 0.5) + 100
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG")  # tiny file, huge image
    t0 = time.monotonic()
    with pytest.raises(ImageRefused, match="megapixels"):
        open_image(buf.getvalue())
    assert time.monotonic() - t0 < 2


# --- 8. messages that mislead ---------------------------------------------------------------------------------------
def test_messages_say_what_is_true(ws, tmp_path, capsys):
    from mivis.cli import main
    from mivis.data import DataError, load_split
    from mivis.evaluation import compare_runs
    from mivis.ui import plain
    from mivis.weights import WeightsError, read_metadata
    trunc = tmp_path / "t.safetensors"
    trunc.write_bytes(struct.pack("<Q", 0x180) + b'{"x": {"dtype"')  # header length's low byte is 0x80
    with pytest.raises(WeightsError) as e:
        read_metadata(trunc)
    assert "truncated" in str(e.value) and "pickle" not in str(e.value)
    root = tmp_path / "faces"
    for i in range(4):
        (root / f"p{i}").mkdir(parents=True)
        for j in range(2):
            (root / f"p{i}" / f"{j}.png").write_bytes(png_bytes(16, 16))
    with pytest.raises(DataError) as e:
        load_split({"dataset": "folder", "data_dir": str(root), "image_size": 16, "n_private": 2,
                    "test_per_identity": 2})
    assert "2..2" not in str(e.value) and "no n_private works" in str(e.value)
    assert main(["--workspace", str(ws.path), "runs", "list", "--status", "foo"]) == 2
    assert "not one of" in capsys.readouterr().err
    a = fake_run(ws, "attack")
    with pytest.raises(ParamError, match="itself"):
        compare_runs(ws, a.id, a.id)
    shown = plain("![](http://host/x.png) **bold**\n# head")
    assert "![" not in shown and "**" not in shown and "\n" not in shown


def test_control_characters_in_a_run_name_cannot_drive_the_terminal(ws, capsys):
    from mivis.cli import main
    fake_run(ws, name="evil\x1b[2J\nsecond line")
    assert main(["--workspace", str(ws.path), "runs", "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "evil?[2J?second line" in out and out.count("\n") == 2


def test_markdown_in_a_run_name_is_shown_as_text_on_the_runs_page(ws):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from mivis import ui
    r = fake_run(ws, name="![](http://host/x.png) **loud**")
    ui.shutdown_managers()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["run"] = r.id
    at.switch_page("pages/runs.py")
    at.run()
    try:
        assert not at.exception
        md = " ".join(m.value for m in at.markdown)
        assert "![](" not in md and "\\!\\[\\]" in md
    finally:
        ui.shutdown_managers()
