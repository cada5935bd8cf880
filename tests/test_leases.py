"""The registry knows which runs are in use (leases): `runs delete` refuses a run that a CLI command, a queued
or running app job, a sweep step or a running run made from it uses, naming the user; a lease of a process
that died is stale and never blocks."""
from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mivis.jobs import JOB_KINDS, JobManager, job_kind
from mivis.runs import RunError, Workspace, _proc_start

ROOT = Path(__file__).resolve().parent.parent
HOLD = threading.Event()

if "lease_hold" not in JOB_KINDS:
    @job_kind("lease_hold", validate=lambda p, ws: {"run": ws.get(p["run"]).id})
    def _hold(params, ctx):
        """Holds until HOLD opens (the test controls timing)."""
        while not HOLD.wait(0.01):
            ctx.reporter.check()
        return {}


def done_run(ws: Workspace, kind: str = "target", parents=()):
    r = ws.create(kind, {"kind": kind, "n": time.time_ns()}, parents=parents)
    r.finish({"natural_acc": 0.5})
    return ws.get(r.id)


def test_a_cli_attack_holds_its_runs_and_a_killed_one_holds_nothing(ws):
    """A real `python -m mivis attack` process: while it attacks, `runs delete` of its target or its judge is
    refused naming the command; killed with SIGKILL, its lease is stale and the delete goes through."""
    from mivis.cli import main
    from mivis.train import train_run
    data = {"dataset": "synthetic", "n_private": 4, "image_size": 32, "test_per_identity": 1}
    target = train_run("target", {"device": "cpu", "epochs": 1, "batch_size": 16}, data, workspace=ws)
    judge = train_run("eval", {"device": "cpu", "arch": "vgg11", "epochs": 1, "batch_size": 16}, data, workspace=ws)
    env = {**os.environ, "MIVIS_WORKSPACE": str(ws.path), "MIVIS_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mivis", "--workspace", str(ws.path), "attack", "--attack",
                             "whitebox", "--target", target.id, "--eval", judge.id, "--identities", "0,1",
                             "--restarts", "1", "--iterations", "100000", "--device", "cpu", "--no-dlib"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any(r.status == "running" for r in ws.list(kind="attack")):  # it is attacking now
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the attack did not start in 300 s"
            time.sleep(0.2)
        for rid in (target.id, judge.id):
            with pytest.raises(RunError, match=rf"run {rid} is in use by the command `attack` \(pid {proc.pid}\)"):
                ws.delete(rid)
            assert ws.in_use(rid)
        assert main(["--workspace", str(ws.path), "runs", "delete", target.id]) == 2
        assert main(["--workspace", str(ws.path), "runs", "delete", judge.id, "--cascade"]) == 2
        assert ws.exists(target.id) and target.dir.is_dir() and ws.exists(judge.id)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert ws.in_use(target.id) == []  # stale: its process is gone
    attack = ws.list(kind="attack")[0]
    assert attack.status == "interrupted"
    assert ws.delete(target.id) == [target.id]  # an interrupted attack does not hold its target
    assert not target.dir.exists()


def test_a_queued_app_job_holds_its_run_until_it_is_cancelled(ws):
    busy, base = done_run(ws), done_run(ws)
    target = done_run(ws, parents=[base.id])
    HOLD.clear()
    m = JobManager(ws, devices=["cpu"], flush_interval=0.05)
    try:
        first = m.submit("lease_hold", {"run": busy.id}, session="a")
        queued = m.submit("lease_hold", {"run": target.id}, session="b", label="hold it")
        assert m.get(queued.id).status == "queued"
        with pytest.raises(RunError, match=rf"in use by app job hold it \({queued.id}\)"):
            ws.delete(target.id)
        with pytest.raises(RunError, match=queued.id):  # a cascade from the run it was made from checks it too
            ws.delete(base.id, cascade=True)
        m.cancel(queued.id)
        assert ws.delete(base.id, cascade=True) == [base.id, target.id]  # free as soon as the job is cancelled
        with pytest.raises(RunError, match=first.id):
            ws.delete(busy.id)
        HOLD.set()
        assert m.wait(first.id, 20).status == "done"
        assert ws.delete(busy.id) == [busy.id]  # and as soon as a job ends
    finally:
        HOLD.set()
        m.shutdown(wait=5)


def test_a_sweep_step_holds_the_runs_it_depends_on(ws, monkeypatch):
    from mivis.sweep import steps
    target, prior = done_run(ws), done_run(ws, "prior")
    seen = {}

    def attack(step, w, runs, reporter):  # stands in for the attack: what does the registry say meanwhile?
        for rid in (target.id, prior.id):
            with pytest.raises(RunError) as e:
                w.delete(rid)
            seen[rid] = str(e.value)
        return "attack-run"
    monkeypatch.setattr(steps, "_execute", attack)
    step = steps.Step("attack", {"target": "kt", "prior": "kp"}, deps=["kt", "kp"], label="gmi on resnet18")
    assert steps.execute(step, ws, {"kt": target.id, "kp": prior.id}) == "attack-run"
    assert all("in use by sweep step gmi on resnet18" in seen[r] for r in (target.id, prior.id)), seen
    assert ws.delete(target.id) == [target.id] and ws.delete(prior.id) == [prior.id]  # released after it


def test_a_running_run_holds_its_parents(ws):
    target = done_run(ws)
    run = ws.create("attack", {"a": 1}, parents=[target.id])
    with pytest.raises(RunError, match=f"in use by running attack run {run.id}"):
        ws.delete(target.id)
    run.fail("stopped")
    assert ws.delete(target.id) == [target.id]


def test_a_lease_of_a_dead_or_reused_pid_is_stale_and_a_deleted_run_cannot_be_leased(ws):
    import sqlite3
    target = done_run(ws)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    me = os.getpid()
    with sqlite3.connect(ws.db_path) as con:
        for key, owner in (("dead", f"{platform.node()}:{dead}:1"),
                           ("reused", f"{platform.node()}:{me}:{int(_proc_start(me)) + 1}")):  # pid reused since
            con.execute("INSERT INTO leases (run_id, key, holder, owner, created, beat) VALUES (?,?,?,?,?,?)",
                        (target.id, key, f"a {key} process", owner, time.time(), time.time()))
    assert ws.in_use(target.id) == []
    live = ws.lease([target.id], "this test")
    with pytest.raises(RunError, match="in use by this test"):
        ws.delete(target.id)
    live.release()
    assert ws.delete(target.id) == [target.id]
    with sqlite3.connect(ws.db_path) as con:
        assert con.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0  # stale rows removed
    with pytest.raises(RunError, match="was deleted"):
        ws.lease([target.id], "too late")
    assert ws.lease([target.id], "skips it", missing_ok=True).run_ids == []


def test_a_lease_of_another_host_lives_by_its_heartbeat(ws):
    import sqlite3
    from mivis import runs
    target = done_run(ws)
    with sqlite3.connect(ws.db_path) as con:
        con.execute("INSERT INTO leases (run_id, key, holder, owner, created, beat) VALUES (?,?,?,?,?,?)",
                    (target.id, "ray", "a Ray task elsewhere", "another-host:4242:77", time.time(), time.time()))
    with pytest.raises(RunError, match="in use by a Ray task elsewhere"):  # beating: live
        ws.delete(target.id)
    with sqlite3.connect(ws.db_path) as con:
        con.execute("UPDATE leases SET beat = ?", (time.time() - runs.LEASE_STALE_S - 1,))
    assert ws.in_use(target.id) == []  # silent for LEASE_STALE_S: its task died with its host
    mine = ws.lease([target.id], "this process")
    with sqlite3.connect(ws.db_path) as con:
        con.execute("UPDATE leases SET beat = 0")
    runs.beat_once()  # what the lease thread does every LEASE_BEAT_S seconds
    with sqlite3.connect(ws.db_path) as con:
        assert time.time() - con.execute("SELECT beat FROM leases").fetchone()[0] < 60
    mine.release()
    assert ws.delete(target.id) == [target.id]
