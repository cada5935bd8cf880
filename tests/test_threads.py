"""The thread count fits the cores left free by other programs, and idle OpenMP threads sleep."""
from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

from mivis import threads


def _spin(started, stop) -> None:
    started.set()
    while not stop.is_set():
        pass


def test_env_fixes_the_thread_count(monkeypatch):
    monkeypatch.setenv(threads.ENV, "3")
    load = threads.measure_load(0.05)
    assert (load.threads, load.source) == (3, "env")
    assert "MIVIS_THREADS=3" in load.describe()


def test_own_work_is_not_counted_as_load(monkeypatch):
    """This process computing during the sample must not make it give up its cores."""
    monkeypatch.delenv(threads.ENV, raising=False)
    if threads._system_jiffies() is None:
        pytest.skip("no /proc/stat on this system")
    import torch
    a = torch.randn(400, 400)
    t0 = threads._system_jiffies(), threads._own_jiffies()
    end = time.time() + 0.4
    while time.time() < end:
        a = (a @ a).tanh()
    t1 = threads._system_jiffies(), threads._own_jiffies()
    d_busy, d_total = t1[0][0] - t0[0][0], t1[0][1] - t0[0][1]
    own = t1[1] - t0[1]
    assert own > 0 and own <= d_busy + 2  # what we used is inside the machine's busy time, so it is subtracted


@pytest.mark.skipif(threads._system_jiffies() is None, reason="no /proc/stat on this system")
def test_busy_cores_take_threads_away(monkeypatch):
    """With every usable core spun by other processes, one thread is left; with them gone, more."""
    monkeypatch.delenv(threads.ENV, raising=False)
    cores = threads.usable_cores()
    ctx = mp.get_context("spawn")
    stop, started = ctx.Event(), [ctx.Event() for _ in range(cores)]
    procs = [ctx.Process(target=_spin, args=(e, stop)) for e in started]
    for p in procs:
        p.start()
    try:  # measured once every spawned interpreter spins, however long a busy machine takes to start them
        assert all(e.wait(60) for e in started), "the spinning processes did not start within 60 s"
        busy = threads.measure_load(0.5)
    finally:
        stop.set()
        for p in procs:
            p.join()
    assert busy.source == "measured"
    assert busy.others_busy > 0.6 * cores, busy
    assert busy.threads == 1


def test_a_burst_in_one_sample_does_not_take_a_core(monkeypatch):
    """The load is the least of the samples: a click's repaint in one of them leaves the cores to the job,
    a load seen in every sample takes them."""
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    for seen, want in (([1.9, 0.1, 0.2], 2), ([1.9, 1.2, 1.5], 1), ([0.0, 0.0, 1.0], 2),
                       ([0.5, 0.6, 0.5], 2), ([0.8, 0.9, 0.75], 1)):  # free: under 70% of a core taken
        it = iter(seen)
        monkeypatch.setattr(threads, "_others_busy", lambda s, online: next(it))
        load = threads.measure_load(0.01, samples=3)
        assert (load.threads, load.others_busy) == (want, min(seen)), (seen, load)


def test_fit_threads_sets_torch(monkeypatch):
    import torch
    before = torch.get_num_threads()
    monkeypatch.setenv(threads.ENV, "1")
    try:
        assert threads.fit_threads().threads == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_openmp_waits_passively():
    import mivis  # noqa: F401  (the package sets it before torch loads)
    assert os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
