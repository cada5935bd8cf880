"""Job records on disk: the `jobs` and `job_events` tables, JobRecord, progress fractions, which
managers are alive, and the runs a job's parameters name."""
from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runs import _owner_alive, _owner_token

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
JOB_ID_RE = re.compile(r"job-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")  # a tampered id is never used as a path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL,
    session TEXT,
    status TEXT NOT NULL,
    owner TEXT,
    device TEXT,
    runs TEXT NOT NULL DEFAULT '[]',
    needs TEXT NOT NULL DEFAULT '[]',
    result TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE INDEX IF NOT EXISTS jobs_session ON jobs(session);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    t REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, n)
);
"""


class JobError(RuntimeError):
    """A job request that cannot be honoured (quota, unknown job, not yours, shutting down)."""


def runs_in(params: Any) -> list[str]:
    """The run ids a job's (validated) parameters name, anywhere in them: the runs it needs."""
    from ..runs import valid_run_id
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            if valid_run_id(v) and v not in out:
                out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
    walk(params)
    return out


@dataclass
class JobRecord:
    id: str
    seq: int
    kind: str
    label: str
    params: dict
    session: str | None
    status: str
    device: str | None
    runs: list[str]
    result: dict
    error: str | None
    progress: dict
    created: float
    started: float | None
    finished: float | None
    owner: str | None = field(default=None, repr=False)
    position: int | None = None   # 1 = next to start; None unless queued
    running: int = 0              # jobs running right now (for "N ahead" messages)
    dir: Path | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def run_id(self) -> str | None:
        """The run this job produced: its declared result, else the last run it created."""
        return self.result.get("run_id") or (self.runs[-1] if self.runs else None)

    @property
    def fraction(self) -> float | None:
        return progress_fraction(self.progress)

    @property
    def remaining(self) -> float | None:
        """Seconds left in the current part and phase, extrapolated from its progress so far (None until
        5% of it is done, or when the job's events carry no fraction)."""
        f, started = self.fraction, self.progress.get("stage_started")
        if self.status != "running" or f is None or f < 0.05 or not isinstance(started, (int, float)):
            return None
        return max(0.0, (time.time() - started) * (1.0 - f) / f)

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


def progress_fraction(ev: dict) -> float | None:
    """A 0..1 completion estimate from a progress event, or None when it says nothing."""
    try:
        if "fraction" in ev:
            return min(1.0, max(0.0, float(ev["fraction"])))
        if ev.get("epochs") and "epoch" in ev:
            within = ev["step"] / ev["steps"] if ev.get("steps") and "step" in ev else 1.0
            if "step" not in ev:  # an end-of-epoch summary
                return min(1.0, ev["epoch"] / ev["epochs"])
            return min(1.0, (ev["epoch"] - 1 + within) / ev["epochs"])
        for a, b in (("iteration", "iterations"), ("step", "steps"), ("done", "total")):
            if ev.get(b) and a in ev:
                return min(1.0, max(0.0, ev[a] / ev[b]))
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return None


def _clean(ev: dict) -> dict:
    """Keep what is small and JSON-able: numbers, text, flags and short lists of those."""
    out = {}
    for k, v in ev.items():
        if isinstance(v, (bool, int, str)) or v is None:
            out[k] = v
        elif isinstance(v, float):
            out[k] = v if math.isfinite(v) else None
        elif isinstance(v, (list, tuple)) and len(v) <= 256 and all(
                isinstance(x, (int, float, str, bool)) or x is None for x in v):
            out[k] = [x if not isinstance(x, float) or math.isfinite(x) else None for x in v]
        elif hasattr(v, "item") and getattr(v, "ndim", 1) == 0:  # numpy / torch scalar
            out[k] = _clean({k: v.item()})[k]
    return out


# --- liveness of managers ----------------------------------------------------------------------
_LIVE: set[str] = set()
_LIVE_LOCK = threading.Lock()


def _manager_alive(owner: str | None) -> bool:
    if not owner or "|" not in owner:
        return False
    proc, _ = owner.rsplit("|", 1)
    if proc == _owner_token():
        with _LIVE_LOCK:
            return owner in _LIVE
    return _owner_alive(proc)



def _jsonable(obj: Any) -> dict:
    try:
        json.dumps(obj)
        return obj if isinstance(obj, dict) else {"value": obj}
    except (TypeError, ValueError):
        return json.loads(json.dumps(obj, default=str)) if isinstance(obj, dict) else {"value": str(obj)}

