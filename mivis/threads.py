"""CPU thread count for long work, chosen for the cores that are free now.

On a busy 2-core laptop torch's default (one thread per core) makes its threads wait on each other
behind the other programs: 6 epochs of the classroom target took 58 s with 2 threads beside two busy
processes but 30 s with 1. So each long job measures how much of the machine the OTHER processes
use right now (from /proc/stat minus this process's own share) and takes the rest, at least one
thread. The count is chosen once per job and kept for the whole job, so a run's numbers do not
depend on when the load changed. `MIVIS_THREADS=N` fixes it (tests and sweeps use that).

OpenMP threads otherwise spin while waiting for work; `mivis/__init__` sets OMP_WAIT_POLICY=PASSIVE
before torch loads so idle threads sleep instead of taking cores from the other programs.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

ENV = "MIVIS_THREADS"


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _system_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs since boot, or None where /proc/stat is absent."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def _own_jiffies() -> int:
    t = os.times()
    return round((t.user + t.system) * os.sysconf("SC_CLK_TCK"))


@dataclass
class Load:
    cores: int            # cores this process may run on
    others_busy: float    # cores' worth of work by other processes during the sample
    threads: int          # the thread count chosen
    source: str           # "measured", "env" or "unmeasured"

    def describe(self) -> str:
        if self.source == "env":
            return f"{self.threads} thread(s) ({ENV}={self.threads})"
        if self.source == "unmeasured":
            return f"{self.threads} thread(s) (load not measurable here)"
        return (f"{self.threads} of {self.cores} core(s): other programs use {self.others_busy:.1f} "
                f"core(s) now")


def _others_busy(sample_s: float, online: int) -> float | None:
    """Cores' worth of other programs' work during one sample (None where /proc/stat is absent)."""
    a, own_a = _system_jiffies(), _own_jiffies()
    if a is None:
        return None
    time.sleep(sample_s)
    b, own_b = _system_jiffies(), _own_jiffies()
    d_busy, d_total = b[0] - a[0], b[1] - a[1]
    if d_total <= 0:
        return None
    return max(0.0, (d_busy - (own_b - own_a)) / d_total * online)


def measure_load(sample_s: float = 0.2, samples: int = 5) -> Load:
    """How busy the machine is without us, and the thread count that fits the free cores.

    The load is the least of `samples` back-to-back samples: work that lasts (another program computing)
    shows in all of them, a burst does not. The burst that matters is the one a click makes: the browser
    repaints and the page reruns just as the job it launched starts, and a single 0.3 s sample then took a
    core away for the whole job (a classroom attack watched in a browser: 2 threads 40 s, 1 thread ~60 s;
    benchmarks/first_live_attack.py). The repaint after a Launch click was seen to last over a second in
    0.2 s samples (1.6, 1.8, 1.0, 1.7, 0.65 cores): five samples span it."""
    cores = usable_cores()
    fixed = os.environ.get(ENV, "").strip()
    if fixed:
        try:
            n = int(fixed)
        except ValueError:
            n = 0
        if n >= 1:
            return Load(cores, 0.0, n, "env")
    online = os.cpu_count() or cores
    seen = [_others_busy(sample_s, online) for _ in range(max(1, samples))]
    if any(v is None for v in seen):
        return Load(cores, 0.0, cores, "unmeasured")
    others = min(seen)
    # a core counts as free when less than 70% of it is taken by others: a browser repainting a live view
    # takes ~0.5 core, and the job's two threads still beat one there (benchmarks/first_live_attack.py)
    threads = max(1, min(cores, cores - int(others + 0.3)))
    return Load(cores, others, threads, "measured")


def fit_threads(sample_s: float = 0.2, samples: int = 5) -> Load:
    """Measure the load and set torch's intra-op thread count to the free cores; returns the choice."""
    import torch
    load = measure_load(sample_s, samples)
    if torch.get_num_threads() != load.threads:
        torch.set_num_threads(load.threads)
    return load
