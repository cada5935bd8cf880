"""The shipped classroom models: export, checked import, tampering refused, the set-up job shared by all."""
from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from mivis import classroom
from mivis.jobs import JobError, JobManager
from mivis.weights import WeightsError

ONE_EPOCH = tuple((role, {**train, "epochs": 1}, name, label, f) for role, train, name, label, f in classroom.STEPS)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Tiny classroom models (1 epoch each, ORL 32 px) exported once for the module."""
    from mivis.runs import Workspace
    mp = pytest.MonkeyPatch()
    mp.setattr(classroom, "STEPS", ONE_EPOCH)
    root = tmp_path_factory.mktemp("classroom")
    src_ws = Workspace(root / "source-ws")
    info = classroom.export_classroom(root / "assets", src_ws)
    mp.undo()
    return root / "assets", info, src_ws


def test_export_records_configs_and_hashes(exported):
    assets, info, src_ws = exported
    assert {m["role"] for m in info["models"]} == {"target", "eval"}
    for m in info["models"]:
        rec = src_ws.get(m["source_run"])
        assert m["config"] == rec.config  # the exact configuration the model was trained under
        assert m["sha256"] == classroom._sha256(assets / m["file"])
        # float16 on disk: about half the float32 weights
        assert (assets / m["file"]).stat().st_size < 0.6 * rec.file("weights.safetensors").stat().st_size
    assert json.loads((assets / "classroom.json").read_text())["command"] == classroom.EXPORT_COMMAND


def test_import_registers_runs_that_work_like_trained_ones(exported, ws):
    from mivis.evaluation import check_judge
    from mivis.train import load_classifier
    assets, info, src_ws = exported
    t0 = time.monotonic()
    ids = classroom.import_classroom(ws, assets)
    assert time.monotonic() - t0 < 60  # seconds on any machine; training took far longer
    target, judge = ws.get(ids["target"]), ws.get(ids["eval"])
    src = {m["role"]: src_ws.get(m["source_run"]) for m in info["models"]}
    for role, rec in (("target", target), ("eval", judge)):
        assert rec.status == "done" and rec.config == src[role].config
        assert rec.metrics["shipped_sha256"] and 0.0 <= rec.metrics["natural_acc"] <= 1.0
        # the float16 rounding costs at most one held-out image of 60 here
        assert abs(rec.metrics["natural_acc"] - src[role].metrics["natural_acc"]) <= 1 / 60 + 1e-9
        load_classifier(ws, rec.id)
    check_judge(ws, judge.id, target)  # the judge may judge the target: same split, other architecture
    assert classroom.find_trained(ws, "target", ONE_EPOCH[0][1], target.config["data"]) == target.id
    again = classroom.import_classroom(ws, assets)
    assert again == ids and len(ws.list()) == 2


def test_tampered_or_hostile_shipments_are_refused(exported, ws, tmp_path):
    assets, info, _ = exported
    bad = tmp_path / "bad"
    shutil.copytree(assets, bad)
    f = bad / info["models"][0]["file"]
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        classroom.import_classroom(ws, bad)
    assert ws.list() == []  # nothing registered before the checks pass
    desc = json.loads((assets / "classroom.json").read_text())
    desc["models"][0]["file"] = "../../etc/passwd"
    (bad / "classroom.json").write_text(json.dumps(desc))
    with pytest.raises(WeightsError, match="not a mivis classroom description"):
        classroom.import_classroom(ws, bad)
    (bad / "classroom.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not a mivis classroom description"):
        classroom.shipped(bad)


def test_setup_job_uses_the_shipment_and_is_shared(exported, ws, monkeypatch):
    assets, _, _ = exported
    monkeypatch.setattr(classroom, "ASSETS", assets)
    monkeypatch.setattr(classroom, "STEPS", ONE_EPOCH)
    gate = threading.Event()
    real = classroom.import_classroom

    def slow_import(w, src=assets):
        gate.wait(10)
        return real(w, src)
    monkeypatch.setattr(classroom, "import_classroom", slow_import)
    m = JobManager(ws, devices=["cpu"], flush_interval=0.05)
    try:
        a = m.submit("classroom", {}, session="teacher", label="classroom set-up")
        with pytest.raises(JobError, match="already"):
            m.submit("classroom", {}, session="student", label="classroom set-up")
        gate.set()
        done = m.wait(a.id, timeout=120)
        assert done.status == "done", done.error
        assert ws.get(done.result["run_id"]).metrics.get("shipped_sha256")  # imported, not trained
        assert [r.kind for r in ws.list(kind="target")] == ["target"]
        b = m.submit("classroom", {}, session="student", label="classroom set-up")  # allowed once finished
        assert m.wait(b.id, timeout=60).result["run_id"] == done.result["run_id"]
    finally:
        m.shutdown(wait=5)


def test_queue_rows_say_what_for_whom_and_how_long():
    from types import SimpleNamespace

    from mivis.ui import queue_rows
    running = SimpleNamespace(kind="attack", label="gmi attack", session="s1", status="running", elapsed=12.0,
                              remaining=30.0, fraction=0.3, position=None,
                              progress={"phase": "attack", "iteration": 30, "iterations": 100})
    queued = SimpleNamespace(kind="classroom", label="classroom set-up", session="s2", status="queued",
                             elapsed=None, remaining=None, fraction=None, position=1, progress={})
    rows = queue_rows([running, queued], me="s2")
    assert rows[0]["for"] == "another session" and "12 s" in rows[0]["state"] and "30 s left" in rows[0]["state"]
    assert "iteration 30/100" in rows[0]["step"]
    assert rows[1]["for"] == "you" and rows[1]["state"] == "queued, position 1"
    assert queue_rows([queued], me="s3")[0]["for"] == "everyone"


def test_remaining_time_is_extrapolated_within_the_current_step():
    from mivis.jobs import JobRecord
    now = time.time()
    rec = JobRecord(id="j", seq=1, kind="train", label="", params={}, session=None, status="running", device="cpu",
                    runs=[], result={}, error=None,
                    progress={"epoch": 5, "epochs": 20, "stage_started": now - 10.0},
                    created=now - 11, started=now - 11, finished=None)
    assert rec.fraction == pytest.approx(0.25)
    assert rec.remaining == pytest.approx(30.0, abs=1.0)  # 10 s for a quarter: 30 s for the rest
    rec.progress = {"epoch": 0, "epochs": 100, "stage_started": now - 10.0}
    assert rec.remaining is None  # too early to say


def test_the_shipped_models_import_and_match_the_code(ws):
    """assets/classroom/ imports as it is, and records what `classroom export` would train today."""
    from mivis.train import as_recorded_before, training_config
    info = classroom.shipped()
    assert info is not None, "assets/classroom/ is missing: run `python -m mivis classroom export`"
    ids = classroom.import_classroom(ws)
    for role, train, *_ in classroom.STEPS:
        rec = ws.get(ids[role])
        now = training_config(role, {**train, "device": "cpu"}, classroom.CLASSROOM_DATA, workspace=ws)
        # exported before the ResNets' zero_init_last knob existed: its config has no key for it (the same training)
        assert rec.config["model"] in (now["model"], (as_recorded_before(now) or now)["model"])
        assert rec.config["data"] == now["data"]
        assert {k: rec.config["train"].get(k) for k in now["train"]} == now["train"], \
            "training settings changed since export: rerun `python -m mivis classroom export`"
        # the shipped target and judge learned ORL: far above chance (5%)
        assert rec.metrics["natural_acc"] > 0.9
