"""The job system: FIFO, one active job per session, cancel, persistence, interrupted detection."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mivis.jobs import JOB_KINDS, JobError, JobManager, job_kind, progress_fraction
from mivis.params import ParamError

ROOT = Path(__file__).resolve().parent.parent
GATES: dict[str, threading.Event] = {}
STARTED: list[str] = []


if "test_loop" not in JOB_KINDS:
    @job_kind("test_loop")
    def _loop(params, ctx):
        """Steps until done; waits on a named gate first (so tests control timing)."""
        STARTED.append(params.get("tag", ""))
        gate = GATES.get(params.get("gate", ""))
        while gate is not None and not gate.wait(0.01):
            ctx.reporter.check()
        for i in range(params.get("steps", 3)):
            ctx.reporter.check()
            ctx.reporter.report(phase="loop", iteration=i + 1, iterations=params.get("steps", 3), loss=1.0 / (i + 1))
            time.sleep(params.get("sleep", 0.0))
        if params.get("fail"):
            raise ValueError("boom on purpose")
        return {"tag": params.get("tag", ""), "steps": params.get("steps", 3)}


@pytest.fixture
def manager(ws):
    STARTED.clear()
    m = JobManager(ws, devices=["cpu"], flush_interval=0.05)
    yield m
    for g in GATES.values():
        g.set()
    m.shutdown(wait=5)
    GATES.clear()


def test_fifo_and_queue_position(manager):
    GATES["a"] = threading.Event()
    a = manager.submit("test_loop", {"tag": "a", "gate": "a"}, session="s1")
    b = manager.submit("test_loop", {"tag": "b"}, session="s2")
    c = manager.submit("test_loop", {"tag": "c"}, session="s3")
    deadline = time.monotonic() + 5
    while manager.get(a.id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert manager.get(a.id).status == "running"
    assert (manager.get(b.id).position, manager.get(c.id).position) == (1, 2)
    assert manager.get(c.id).running == 1 and manager.get(a.id).position is None
    GATES["a"].set()
    for j in (a, b, c):
        assert manager.wait(j.id, 10).status == "done"
    assert STARTED == ["a", "b", "c"]
    done = manager.get(c.id)
    assert done.result == {"tag": "c", "steps": 3} and done.fraction == 1.0
    assert [e["iteration"] for e in manager.events(c.id)][-1] == 3


def test_one_active_job_per_session(manager):
    GATES["g"] = threading.Event()
    a = manager.submit("test_loop", {"gate": "g"}, session="s1")
    with pytest.raises(JobError, match="already has a"):
        manager.submit("test_loop", {}, session="s1")
    other = manager.submit("test_loop", {}, session="s2")  # another session is not blocked
    GATES["g"].set()
    manager.wait(a.id, 10)
    again = manager.submit("test_loop", {}, session="s1")  # finished: the quota is free again
    assert manager.wait(again.id, 10).status == "done" and manager.wait(other.id, 10).status == "done"


def test_cancel_running_and_queued_leaves_others_alone(manager):
    GATES["run"] = threading.Event()
    a = manager.submit("test_loop", {"tag": "a", "gate": "run"}, session="s1")
    b = manager.submit("test_loop", {"tag": "b"}, session="s2")
    c = manager.submit("test_loop", {"tag": "c", "steps": 5}, session="s3")
    with pytest.raises(JobError, match="another session"):
        manager.cancel(b.id, session="s1")
    assert manager.cancel(b.id, session="s2").status == "cancelled"  # queued: cancelled at once
    manager.cancel(a.id, session="s1")  # running: stops at its next check()
    assert manager.wait(a.id, 10).status == "cancelled"
    assert manager.wait(c.id, 10).status == "done"
    assert STARTED == ["a", "c"]  # b never ran


def test_failures_are_one_line_and_the_worker_survives(manager):
    bad = manager.submit("test_loop", {"fail": True}, session="s1")
    assert manager.wait(bad.id, 10).status == "failed"
    assert manager.get(bad.id).error == "ValueError: boom on purpose"
    assert (manager.get(bad.id).dir / "error.log").exists()
    ok = manager.submit("test_loop", {}, session="s1")
    assert manager.wait(ok.id, 10).status == "done"
    with pytest.raises(ParamError, match="unknown job kind"):
        manager.submit("nope", {}, session="s1")
    with pytest.raises(ParamError, match="JSON"):
        manager.submit("test_loop", {"x": object()}, session="s1")


def test_state_survives_a_new_manager(ws, manager):
    j = manager.submit("test_loop", {"tag": "p", "steps": 4}, session="s1", label="persist me")
    manager.wait(j.id, 10)
    manager.shutdown()
    fresh = JobManager(ws, devices=["cpu"])  # what a server restart builds
    try:
        rec = fresh.get(j.id)
        assert (rec.status, rec.label, rec.result["steps"]) == ("done", "persist me", 4)
        ev = fresh.events(j.id)  # thinned in time, first and last kept
        assert (ev[0]["iteration"], ev[-1]["iteration"]) == (1, 4) and fresh.list(session="s1")[0].id == j.id
        assert fresh.claim(j.id, "s9").session == "s1"  # finished jobs are not re-owned
    finally:
        fresh.shutdown()


def test_job_of_a_dead_server_is_interrupted(ws, tmp_path):
    """A real process runs a job and is killed with SIGKILL; the next manager sees interrupted."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from mivis.jobs import JobManager, job_kind
        @job_kind("forever")
        def forever(params, ctx):
            ctx.workspace.create("analysis", {{"k": 1}})
            while True:
                ctx.reporter.check(); ctx.reporter.report(phase="spin"); time.sleep(0.05)
        m = JobManager({str(ws.path)!r}, devices=["cpu"])
        a = m.submit("forever", {{}}, session="x")
        b = m.submit("forever", {{}}, session="y")
        while m.get(a.id).status != "running" or not m.get(a.id).runs:
            time.sleep(0.02)
        print(a.id, b.id, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        a_id, b_id = proc.stdout.readline().split()
        live = JobManager(ws, devices=["cpu"])
        assert live.get(a_id).status == "running"  # its server is alive: not interrupted
        live.shutdown()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    after = JobManager(ws, devices=["cpu"])
    try:
        a, b = after.get(a_id), after.get(b_id)
        assert (a.status, b.status) == ("interrupted", "interrupted")
        assert "while it was running" in a.error and "before it started" in b.error
        assert ws.get(a.runs[0]).status == "interrupted"  # the linked run too
    finally:
        after.shutdown()


def test_train_job_links_its_run(manager, ws, tiny_data):
    with pytest.raises(ParamError, match=r"\[1, 1000\]"):
        manager.submit("train", {"train": {"epochs": 0}, "data": tiny_data}, session="s1")
    with pytest.raises(ParamError, match="unknown defense"):
        manager.submit("train", {"data": tiny_data, "defenses": {"nope": {}}}, session="s1")
    assert manager.list() == [] and ws.list() == []  # refused before anything was queued
    j = manager.submit("train", {"train": {"epochs": 1, "batch_size": 16}, "data": tiny_data}, session="s1")
    rec = manager.wait(j.id, 120)
    assert rec.status == "done", rec.error
    run = ws.get(rec.run_id)
    assert run.kind == "target" and run.status == "done" and rec.runs == [run.id]
    assert rec.result["metrics"]["natural_acc"] == run.metrics["natural_acc"]
    assert any(e.get("phase") == "epoch" for e in manager.events(j.id))


def test_progress_fraction():
    assert progress_fraction({"epoch": 2, "epochs": 4, "step": 5, "steps": 10}) == pytest.approx(0.375)
    assert progress_fraction({"phase": "epoch", "epoch": 4, "epochs": 4}) == 1.0
    assert progress_fraction({"iteration": 50, "iterations": 200}) == 0.25
    assert progress_fraction({"fraction": 2}) == 1.0 and progress_fraction({"loss": 1}) is None
