"""Jobs: long work (training, priors, attacks, analyses) run outside the app's script thread.

One `JobManager` per server process. A job is a registered kind plus JSON-able params; its
function runs on a worker thread with a `Reporter` (progress callback + cancel Event) and a
workspace that links every run it creates to the job. Workers are daemon threads fed by a
FIFO `queue.Queue`: one per GPU, one on CPU. Each session may have one active (queued or
running) job. Job state lives in the workspace's SQLite file (`jobs` and `job_events` tables),
so a page reload or a server restart finds the job again; a job whose server died is shown as
interrupted. Nothing here imports streamlit.
"""
from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import secrets
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .params import ParamError
from .progress import Cancelled, Reporter
from .registry import Registry
from .runs import RunError, Workspace, _owner_alive, _owner_token
from .threads import fit_threads

log = logging.getLogger(__name__)

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
    from .runs import valid_run_id
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


def jobs_needing(ws: Workspace, run_ids: list[str], con) -> list[tuple[dict, str]]:
    """(job row, run id) for every queued or running job of a live server that needs one of
    `run_ids` (its recorded inputs). `con` is the caller's connection (inside its transaction)."""
    if con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone() is None:
        return []
    cols = {r[1] for r in con.execute("PRAGMA table_info(jobs)").fetchall()}
    sel = "id, kind, label, status, owner, params" + (", needs" if "needs" in cols else "")
    out = []
    wanted = set(run_ids)
    for r in con.execute(f"SELECT {sel} FROM jobs WHERE status IN ('queued', 'running') ORDER BY seq").fetchall():
        if not _manager_alive(r["owner"]):
            continue  # its server died: reaped as interrupted on the next look
        needs: list = []
        for raw in ((r["needs"] if "needs" in cols else "[]"), r["params"]):
            try:
                needs += runs_in(json.loads(raw))
            except (TypeError, ValueError):
                pass
        for rid in needs:
            if rid in wanted:
                out.append(({k: r[k] for k in ("id", "kind", "label", "status")}, rid))
                break
    return out


def _user_errors() -> tuple[type[BaseException], ...]:
    from .data import DataError
    from .weights import WeightsError
    return (ParamError, DataError, RunError, WeightsError, JobError)


# --- job kinds -------------------------------------------------------------------------------
JOB_KINDS = Registry("job kind")


def job_kind(name: str, *, validate: Callable[[dict, Workspace], dict] | None = None, help: str = "",
             single: bool = False):
    """Register `fn(params, ctx) -> dict | None` as a job kind. `validate(params, workspace) -> params`
    runs in the submitting thread, so a bad setting is refused before anything is queued. A `single` kind
    (the shared classroom set-up) is refused while one is queued or running for any session."""
    def deco(fn):
        JOB_KINDS.register(name, fn, help=help, validate=validate, single=single)
        return fn
    return deco


@dataclass
class JobContext:
    """What a job function gets besides its params."""
    job_id: str
    workspace: Workspace  # runs created through it are linked to the job
    reporter: Reporter
    device: str           # "cpu" or "cuda:i": the worker's device
    dir: Path             # the job's own folder (live previews, logs)

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Atomically write a preview file (e.g. the current reconstructions) into the job folder."""
        p = (self.dir / name).resolve()
        if self.dir.resolve() not in p.parents:
            raise JobError(f"file name {name!r} escapes the job folder")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{secrets.token_hex(3)}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return p


class _TrackingWorkspace(Workspace):
    def __init__(self, path: Path, on_create: Callable[[str], None]):
        super().__init__(path)
        self._on_create = on_create

    def create(self, *args, **kwargs):
        run = super().create(*args, **kwargs)
        self._on_create(run.id)
        return run


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


def detect_devices() -> list[str]:
    """One worker per GPU, else one CPU worker."""
    try:
        import torch
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - torch broken
        n = 0
    return [f"cuda:{i}" for i in range(n)] or ["cpu"]


class _EventSink:
    """The Reporter callback: keeps the latest event, records a thinned history, flushes to disk."""

    ALWAYS_KEEP = ("epoch", "eval", "done", "snapshot", "summary")

    def __init__(self, manager: "JobManager", job_id: str, history_interval: float, flush_interval: float):
        self.m, self.job_id = manager, job_id
        self.history_interval, self.flush_interval = history_interval, flush_interval
        self.latest: dict = {}
        self.pending: list[tuple[int, float, str]] = []
        self.n = 0
        self.last_kept: dict[str, float] = {}
        self.last_flush = 0.0
        self.stage: tuple | None = None
        self.threads = ""  # the CPU thread choice for this job (mivis.threads), shown with its progress
        self.stage_started = time.time()
        self.skipped: tuple[str, float, dict] | None = None
        self.lock = threading.Lock()

    def __call__(self, fields: dict) -> None:
        ev = _clean(fields)
        now = time.time()
        phase = str(ev.get("phase", ""))
        with self.lock:
            stage = (ev.get("part"), phase)  # remaining time is extrapolated within one part and phase
            if stage != self.stage:
                self.stage, self.stage_started = stage, now
            ev["stage_started"] = self.stage_started
            self.latest = {**ev, "threads": self.threads} if self.threads else ev
            if (phase in self.ALWAYS_KEEP or now - self.last_kept.get(phase, -1e9) >= self.history_interval):
                if self.skipped is not None and self.skipped[0] != phase:
                    self._keep(*self.skipped)  # a phase's last event ends its curve
                self.skipped = None
                self.last_kept[phase] = now
                self._keep(phase, now, ev)
            else:
                self.skipped = (phase, now, ev)
            if now - self.last_flush >= self.flush_interval:
                self._flush(now)

    def _keep(self, phase: str, t: float, ev: dict) -> None:
        self.pending.append((self.n, t, json.dumps(ev)))
        self.n += 1

    def flush(self) -> None:
        """Final flush: the last event of every curve is kept."""
        with self.lock:
            if self.skipped is not None:
                self._keep(*self.skipped)
                self.skipped = None
            self._flush(time.time())

    def _flush(self, now: float) -> None:
        self.last_flush = now
        rows, self.pending = self.pending, []
        with self.m.ws._connect() as con:
            if rows:
                con.executemany("INSERT OR REPLACE INTO job_events (job_id, n, t, data) VALUES (?,?,?,?)",
                                [(self.job_id, n, t, d) for n, t, d in rows])
            con.execute("UPDATE jobs SET progress = ?, updated = ? WHERE id = ?",
                        (json.dumps(self.latest), now, self.job_id))


class JobManager:
    """FIFO job queue with daemon workers and on-disk state. Thread-safe."""

    def __init__(self, workspace: Workspace | str | Path | None = None, *, devices: list[str] | None = None,
                 per_session: int = 1, max_queued: int = 64, flush_interval: float = 0.5,
                 history_interval: float = 0.2):
        self.ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self.jobs_dir = self.ws.path / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.owner = f"{_owner_token()}|{secrets.token_hex(4)}"
        with _LIVE_LOCK:
            _LIVE.add(self.owner)
        self.per_session, self.max_queued = per_session, max_queued
        self.flush_interval, self.history_interval = flush_interval, history_interval
        self._devices = devices
        self._lock = threading.RLock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancel: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._stopped = False
        with self.ws._connect() as con:
            con.executescript(_SCHEMA)
            cols = {r[1] for r in con.execute("PRAGMA table_info(jobs)").fetchall()}
            if "needs" not in cols:  # a registry from before jobs recorded their inputs
                con.execute("ALTER TABLE jobs ADD COLUMN needs TEXT NOT NULL DEFAULT '[]'")
        self.reap()

    # --- submitting and cancelling --------------------------------------------------------------
    def submit(self, kind: str, params: dict | None = None, *, session: str | None = None,
               label: str = "") -> JobRecord:
        """Validate, then queue. Raises ParamError (bad settings) or JobError (quota, shutdown)."""
        entry = JOB_KINDS.get(kind)
        params = dict(params or {})
        if entry.meta.get("validate"):
            params = entry.meta["validate"](params, self.ws)
        try:
            params_json = json.dumps(params)
        except (TypeError, ValueError) as e:
            raise ParamError(f"job parameters must be JSON-able: {e}") from None
        with self._lock:
            if self._stopped:
                raise JobError("the job system is shutting down; try again in a moment")
            if session is not None:
                mine = self.active(session=session)
                if len(mine) >= self.per_session:
                    j = mine[0]
                    raise JobError(f"this session already has a {j.status} job ({j.label or j.kind}, {j.id}); "
                                   "wait for it to finish or cancel it first")
            if entry.meta.get("single"):
                same = [j for j in self.active() if j.kind == kind]
                if same:
                    j = same[0]
                    raise JobError(f"the {j.label or kind} is already {j.status} ({j.id}, for "
                                   f"{'this' if j.session == session else 'another'} browser session); "
                                   "it is shown to everyone in the queue, and its result will be shared")
            if len(self.active(status="queued")) >= self.max_queued:
                raise JobError(f"the queue is full ({self.max_queued} jobs waiting); try again later")
            now = time.time()
            job_id = f"job-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            needs = runs_in(params)
            with self.ws._connect() as con:
                con.execute("BEGIN IMMEDIATE")  # a run it needs cannot be deleted between check and insert
                try:
                    for rid in needs:
                        if con.execute("SELECT 1 FROM runs WHERE id = ?", (rid,)).fetchone() is None:
                            raise ParamError(f"run {rid} was deleted; choose another one")
                    con.execute("INSERT INTO jobs (id, kind, label, params, session, status, owner, needs, created, "
                                "updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                (job_id, kind, label or kind, params_json, session, "queued", self.owner,
                                 json.dumps(needs), now, now))
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            self._cancel[job_id] = threading.Event()
            self._ensure_workers()
            self._queue.put(job_id)
        return self.get(job_id)

    def cancel(self, job_id: str, session: str | None = None) -> JobRecord:
        """Cancel a queued job at once, or ask a running one to stop at its next step."""
        with self._lock:
            rec = self.get(job_id)
            if session is not None and rec.session not in (None, session):
                raise JobError(f"job {job_id} belongs to another session")
            if rec.status == "queued":
                self._set(job_id, status="cancelled", error="cancelled before it started", finished=time.time())
            elif rec.status == "running":
                ev = self._cancel.get(job_id)
                if ev is None:  # running in another (live) server process: not ours to stop
                    raise JobError(f"job {job_id} runs in another server process")
                ev.set()
        return self.get(job_id)

    def claim(self, job_id: str, session: str) -> JobRecord:
        """Hand an active job to a new session (a page reload opened with the job's id)."""
        with self._lock:
            rec = self.get(job_id)
            if rec.active and rec.session != session:
                self._set(job_id, session=session)
        return self.get(job_id)

    # --- reading --------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord:
        self.reap()
        with self.ws._connect() as con:
            row = con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobError(f"no job {job_id!r} in workspace {self.ws.path}")
        return self._record(row)

    def exists(self, job_id: str) -> bool:
        with self.ws._connect() as con:
            return con.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None

    def list(self, *, session: str | None = None, status: str | None = None, kind: str | None = None,
             limit: int = 100) -> list[JobRecord]:
        self.reap()
        q, args = "SELECT * FROM jobs WHERE 1=1", []
        for col, val in (("session", session), ("status", status), ("kind", kind)):
            if val is not None:
                q += f" AND {col} = ?"
                args.append(val)
        with self.ws._connect() as con:
            rows = con.execute(q + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._record(r) for r in rows]

    def active(self, *, session: str | None = None, status: str | None = None) -> list[JobRecord]:
        """Queued and running jobs (optionally of one session), oldest first."""
        q, args = "SELECT * FROM jobs WHERE status IN ('queued', 'running')", []
        if session is not None:
            q += " AND session = ?"
            args.append(session)
        if status is not None:
            q += " AND status = ?"
            args.append(status)
        with self.ws._connect() as con:
            rows = con.execute(q + " ORDER BY seq", args).fetchall()
        return [self._record(r) for r in rows]

    def events(self, job_id: str, since: int = 0) -> list[dict]:
        """The recorded progress history (thinned in time; summaries always kept)."""
        with self.ws._connect() as con:
            rows = con.execute("SELECT data FROM job_events WHERE job_id = ? AND n >= ? ORDER BY n",
                               (job_id, since)).fetchall()
        out = []
        for r in rows:
            try:
                ev = json.loads(r["data"])
            except (TypeError, ValueError):
                continue  # a damaged event row is skipped
            if isinstance(ev, dict):
                out.append(ev)
        return out

    def _record(self, row) -> JobRecord:
        def col(name: str, typ: type):  # a damaged JSON column reads as empty, never a traceback
            try:
                v = json.loads(row[name])
            except (TypeError, ValueError):
                return typ()
            return v if isinstance(v, typ) else typ()

        valid = isinstance(row["id"], str) and JOB_ID_RE.fullmatch(row["id"]) is not None
        rec = JobRecord(
            id=row["id"], seq=row["seq"], kind=row["kind"], label=row["label"], params=col("params", dict),
            session=row["session"], status=row["status"], device=row["device"], runs=col("runs", list),
            result=col("result", dict), error=row["error"], progress=col("progress", dict),
            created=row["created"], started=row["started"], finished=row["finished"],
            owner=row["owner"], dir=self.jobs_dir / (row["id"] if valid else ".invalid-job-id"))
        if rec.status == "queued":
            with self.ws._connect() as con:
                rec.position = 1 + con.execute(
                    "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND owner = ? AND seq < ?",
                    (row["owner"], rec.seq)).fetchone()[0]
                rec.running = con.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running' AND owner = ?",
                                          (row["owner"],)).fetchone()[0]
        return rec

    def reap(self) -> list[str]:
        """Mark queued/running jobs whose server is gone as interrupted; returns their ids."""
        with self.ws._connect() as con:
            rows = con.execute("SELECT id, owner, status FROM jobs WHERE status IN ('queued', 'running')").fetchall()
        dead = [(r["id"], r["status"]) for r in rows if not _manager_alive(r["owner"])]
        for job_id, status in dead:
            why = ("the server stopped while it was running" if status == "running"
                   else "the server stopped before it started")
            self._set(job_id, status="interrupted", error=why, finished=time.time())
        if dead:
            self.ws.reap()
        return [j for j, _ in dead]

    def _set(self, job_id: str, **cols: Any) -> None:
        cols["updated"] = time.time()
        for k in ("runs", "result", "progress"):
            if k in cols and not isinstance(cols[k], str):
                cols[k] = json.dumps(cols[k], default=str)
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self.ws._connect() as con:
            con.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*cols.values(), job_id))

    # --- workers ----------------------------------------------------------------------------------
    def _ensure_workers(self) -> None:
        if self._threads:
            return
        devices = self._devices or detect_devices()
        for i, dev in enumerate(devices):
            t = threading.Thread(target=self._worker, args=(dev,), name=f"mivis-job-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def devices(self) -> list[str]:
        return [t.name for t in self._threads]

    def _worker(self, device: str) -> None:
        if device.startswith("cuda:"):
            import torch
            torch.cuda.set_device(int(device.split(":")[1]))  # per thread: "cuda" means this GPU
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            try:
                self._run(job_id, device)
            except Exception:  # never let a worker die
                log.exception("job %s crashed its worker", job_id)

    def _run(self, job_id: str, device: str) -> None:
        with self._lock:
            rec = self.get(job_id)
            if rec.status != "queued" or self._stopped:
                self._cancel.pop(job_id, None)
                return
            self._set(job_id, status="running", started=time.time(), device=device)
        cancel = self._cancel[job_id]
        sink = _EventSink(self, job_id, self.history_interval, self.flush_interval)
        runs: list[str] = []

        def on_create(run_id: str) -> None:
            runs.append(run_id)
            self._set(job_id, runs=runs)

        ctx = JobContext(job_id=job_id, workspace=_TrackingWorkspace(self.ws.path, on_create),
                         reporter=Reporter(sink, cancel), device=device, dir=self.jobs_dir / job_id)
        fn = JOB_KINDS.get(rec.kind).obj
        try:
            if not device.startswith("cuda"):  # shown with the job's progress, not added to its event history
                sink.threads = fit_threads().describe()
            result = fn(rec.params, ctx) or {}
            sink.flush()
            self._set(job_id, status="done", result=_jsonable(result), finished=time.time())
        except Cancelled:
            sink.flush()
            self._set(job_id, status="cancelled", error="cancelled by user", finished=time.time())
        except _user_errors() as e:
            sink.flush()
            self._set(job_id, status="failed", error=str(e)[:2000], finished=time.time())
        except BaseException as e:  # keep the worker alive; the page shows one readable line
            sink.flush()
            try:
                ctx.write_bytes("error.log", traceback.format_exc().encode())
            except OSError:
                pass
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self._set(job_id, status="failed", error=f"{type(e).__name__}: {msg}"[:2000], finished=time.time())
            log.exception("job %s failed", job_id)
        finally:
            self._cancel.pop(job_id, None)

    def shutdown(self, *, wait: float = 10.0) -> None:
        """Stop taking jobs, cancel queued and running ones, and let the workers exit."""
        with self._lock:
            self._stopped = True
            try:
                for j in self.active():
                    if j.status == "queued" and j.owner == self.owner:
                        self._set(j.id, status="cancelled", error="the job system shut down", finished=time.time())
            except RunError:  # a registry damaged or removed under the server: nothing left to record
                log.warning("job registry unavailable at shutdown", exc_info=True)
            for ev in self._cancel.values():
                ev.set()
            for _ in self._threads:
                self._queue.put(None)
        deadline = time.monotonic() + wait
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with _LIVE_LOCK:
            _LIVE.discard(self.owner)

    def wait(self, job_id: str, timeout: float = 60.0, poll: float = 0.05) -> JobRecord:
        """Block until the job is no longer active (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while True:
            rec = self.get(job_id)
            if not rec.active or time.monotonic() > deadline:
                return rec
            time.sleep(poll)


def _jsonable(obj: Any) -> dict:
    try:
        json.dumps(obj)
        return obj if isinstance(obj, dict) else {"value": obj}
    except (TypeError, ValueError):
        return json.loads(json.dumps(obj, default=str)) if isinstance(obj, dict) else {"value": str(obj)}


# --- built-in job kinds -------------------------------------------------------------------------
def _validate_train(params: dict, ws: Workspace) -> dict:
    """Everything `train_run` would refuse, refused now: `prepare_training` validates every
    setting (data, architecture, each defense against the training config) and builds the model."""
    from .train import prepare_training
    p = dict(params)
    unknown = set(p) - {"role", "train", "data", "arch_params", "defenses", "name"}
    if unknown:
        raise ParamError(f"unknown training job field(s): {', '.join(sorted(unknown))}")
    role = p.get("role", "target")
    train = dict(p.get("train") or {})
    if train.get("init_weights"):  # a path on the server: only inside the allowed data roots
        from .data._folder import allowed_path
        train["init_weights"] = str(allowed_path(train["init_weights"], "init_weights"))
    cfg, split, _, _, _, _, model, init = prepare_training(role, train, p.get("data"), p.get("arch_params"),
                                                           p.get("defenses"), ws)
    # load the starting weights now, as train_run will: a bad file is refused at submit, not in the job
    if init is not None:
        from .train import load_init_weights
        from .weights import check_run_weights
        check_run_weights(ws, init.id)
        load_init_weights(model, ws, init)
    if cfg["init_weights"]:
        from .pretrained import load_pretrained_body
        load_pretrained_body(model, cfg["init_weights"], cfg["arch"])
    return {"role": role, "train": cfg, "data": split.config, "arch_params": dict(p.get("arch_params") or {}),
            "defenses": dict(p.get("defenses") or {}), "name": str(p.get("name") or "")}


@job_kind("train", validate=_validate_train, help="train a classifier (target, evaluation or public model)")
def _train_job(params: dict, ctx: JobContext) -> dict:
    from .train import train_run
    train = dict(params["train"])
    if train.get("device") == "auto":
        train["device"] = "cuda" if ctx.device.startswith("cuda") else "cpu"
    rec = train_run(params["role"], train, params["data"], arch_params=params["arch_params"],
                    defenses=params["defenses"], workspace=ctx.workspace, reporter=ctx.reporter,
                    name=params.get("name", ""))
    return {"run_id": rec.id, "metrics": rec.metrics}


class _Preview:
    """An attack's step hook: about once a second, the current image of every attacked identity
    (its first latent) goes to the job folder as preview.png (+ preview.json), for the live view."""

    def __init__(self, ctx: JobContext, every: float = 1.0, max_identities: int = 1000):  # the live view pages them
        self.ctx, self.every, self.max_ids = ctx, every, max_identities
        self.last = 0.0

    def __call__(self, ev) -> None:
        now = time.monotonic()
        last_step = ev.iteration == ev.iterations - 1
        if now - self.last < self.every and not last_step:
            return
        self.last = now
        import torch

        from .grid import grid_png
        y = ev.y.detach().cpu()
        first: dict[int, int] = {}
        for i, c in enumerate(y.tolist()):
            first.setdefault(c, i)
        ids = sorted(first)[:self.max_ids]
        x = ev.x.detach().float().cpu()[torch.tensor([first[c] for c in ids])]
        scale = 2 if x.shape[-1] <= 32 else 1
        self.ctx.write_bytes("preview.png", grid_png(x, min(10, len(ids)), scale=scale))
        self.ctx.write_bytes("preview.json", json.dumps({"iteration": ev.iteration + 1, "iterations": ev.iterations,
                                                         "identities": ids}).encode())


ATTACK_FIELDS = {"attack", "target_run", "prior_run", "eval_run", "params", "name"}


def _validate_attack(params: dict, ws: Workspace) -> dict:
    from .attacks import plan_attack
    from .evaluation import check_judge, pick_eval_run
    p = dict(params)
    unknown = set(p) - ATTACK_FIELDS
    if unknown:
        raise ParamError(f"unknown attack job field(s): {', '.join(sorted(unknown))}")
    if not p.get("target_run"):
        raise ParamError("choose a target run to attack")
    plan = plan_attack(p.get("attack", "gmi"), p["target_run"], p.get("prior_run"), params=p.get("params"),
                       workspace=ws)
    eval_run = p.get("eval_run") or pick_eval_run(ws, plan.target)
    check_judge(ws, eval_run, plan.target)
    from .weights import check_run_weights
    for rid in (plan.target.id, plan.prior.id if plan.prior else None, eval_run):
        if rid:
            check_run_weights(ws, rid)  # unloadable weights: refused at submit, no failed run left
    return {"attack": plan.attack, "target_run": plan.target.id, "prior_run": plan.prior.id if plan.prior else None,
            "eval_run": eval_run, "params": plan.params, "name": str(p.get("name") or "")}


@job_kind("attack", validate=_validate_attack, help="invert a target with a registered attack; evaluated and stored")
def _attack_job(params: dict, ctx: JobContext) -> dict:
    from .attacks import attack_run
    p = dict(params["params"])
    if p.get("device") == "auto":
        p["device"] = "cuda" if ctx.device.startswith("cuda") else "cpu"
    rec = attack_run(params["attack"], params["target_run"], params["prior_run"], params=p,
                     eval_run=params["eval_run"], workspace=ctx.workspace, reporter=ctx.reporter,
                     on_step=_Preview(ctx), hook_every=max(1, p.get("iterations", 100) // 60),
                     name=params.get("name", ""))
    keep = ("attack_acc_top1", "attack_acc_top5", "target_likelihood", "attack_seconds", "evaluate_seconds")
    return {"run_id": rec.id, "metrics": {k: rec.metrics[k] for k in keep if k in rec.metrics}}


PRIOR_FIELDS = {"type", "params", "data", "target_run", "preset", "name"}


def _validate_prior(params: dict, ws: Workspace) -> dict:
    from .priors import prepare_prior
    p = dict(params)
    unknown = set(p) - PRIOR_FIELDS
    if unknown:
        raise ParamError(f"unknown prior job field(s): {', '.join(sorted(unknown))}")
    ptype = p.get("type", "gmi")
    prm, split, target = prepare_prior(ptype, p.get("params"), p.get("data"), p.get("target_run"), ws,
                                       p.get("preset"))
    if target is not None:
        from .weights import check_run_weights
        check_run_weights(ws, target.id)
    return {"type": ptype, "params": prm, "data": None if target else split.config,
            "target_run": target.id if target else None, "preset": None, "name": str(p.get("name") or "")}


@job_kind("prior", validate=_validate_prior, help="train an image prior on the public identities")
def _prior_job(params: dict, ctx: JobContext) -> dict:
    from .priors import train_prior
    p = dict(params["params"])
    if p.get("device") == "auto":
        p["device"] = "cuda" if ctx.device.startswith("cuda") else "cpu"
    rec = train_prior(params["type"], p, params["data"], target_run=params["target_run"], workspace=ctx.workspace,
                      reporter=ctx.reporter, name=params.get("name", ""))
    return {"run_id": rec.id}


def _validate_layers(params: dict, ws: Workspace) -> dict:
    from .analysis import LAYERS_PARAMS
    p = dict(params)
    unknown = set(p) - {"target_run", "attack_run", "params", "name"}
    if unknown:
        raise ParamError(f"unknown layers job field(s): {', '.join(sorted(unknown))}")
    target = ws.get(p.get("target_run") or "")
    if target.kind not in ("target", "eval") or target.status != "done":
        raise ParamError(f"run {target.id} is a {target.status} {target.kind} run; a finished target is needed")
    if p.get("attack_run"):
        a = ws.get(p["attack_run"])
        if a.kind != "attack" or a.status != "done" or a.config.get("target_run") != target.id:
            raise ParamError(f"run {a.id} is not a finished attack on target {target.id}")
        a.read_tensors("reconstructions.safetensors")
    from .device import resolve_device
    from .weights import check_run_weights
    check_run_weights(ws, target.id)
    lp = LAYERS_PARAMS.validate(p.get("params"), context="layers analysis")
    resolve_device(lp["device"])
    return {"target_run": target.id, "attack_run": p.get("attack_run") or None,
            "params": LAYERS_PARAMS.validate(p.get("params"), context="layers analysis"),
            "name": str(p.get("name") or "")}


@job_kind("layers", validate=_validate_layers, help="Fisher information per layer and gradient flow per stage")
def _layers_job(params: dict, ctx: JobContext) -> dict:
    from .analysis import layers_run
    p = dict(params["params"])
    if p.get("device") == "auto":
        p["device"] = "cuda" if ctx.device.startswith("cuda") else "cpu"
    rec = layers_run(params["target_run"], params["attack_run"], p, workspace=ctx.workspace,
                     reporter=ctx.reporter, name=params.get("name", ""))
    return {"run_id": rec.id}


def _validate_classroom(params: dict, ws: Workspace) -> dict:
    from .classroom import CLASSROOM_DATA
    from .data import load_split
    from .priors import shipped_priors
    if params:
        raise ParamError("the classroom set-up takes no parameters")
    load_split(CLASSROOM_DATA)  # the embedded ORL faces must be readable
    if not any("32" in n for n in shipped_priors()):
        raise ParamError("no shipped 32 px prior in assets/priors/; train one on the Attack page instead")
    return {}


@job_kind("classroom", validate=_validate_classroom, single=True,
          help="the default ORL set-up: the shipped ResNet-18 target and VGG-11 judge at 32 px (trained here "
               "when they are not shipped), and the shipped prior")
def _classroom_job(params: dict, ctx: JobContext) -> dict:
    from .classroom import CLASSROOM_DATA, STEPS, find_trained, import_classroom, shipped
    from .data import DataError, load_split
    from .weights import WeightsError
    from .priors import import_prior, shipped_priors
    from .train import train_run
    ids: dict[str, str] = {}
    try:
        if shipped() is not None:
            ctx.reporter.report(force=True, phase="importing the shipped target and judge", fraction=0.0)
            ids = import_classroom(ctx.workspace)
    except (RunError, WeightsError, DataError) as e:  # a broken shipment: say so, then train instead
        ctx.reporter.report(force=True, phase="training", note=f"shipped models not used: {e}"[:300])
        ids = {}
    data = load_split(CLASSROOM_DATA).config
    dev = "cuda" if ctx.device.startswith("cuda") else "cpu"
    for i, (role, train, name, label, _) in enumerate(STEPS, 1):
        if role in ids:
            continue
        found = find_trained(ctx.workspace, role, train, data)
        if found is None:
            found = train_run(role, {**train, "device": dev}, data, workspace=ctx.workspace, name=name,
                              reporter=ctx.reporter.child(part=role, part_index=i, parts=len(STEPS),
                                                          part_label=label)).id
        ids[role] = found
    prior = import_prior(next(n for n in shipped_priors() if "32" in n), ctx.workspace)
    return {"run_id": ids["target"], "eval_run": ids["eval"], "prior_run": prior.id}


def _validate_ceiling(params: dict, ws: Workspace) -> dict:
    from .priors.ceiling import plan_ceiling
    from .weights import check_run_weights
    p = dict(params)
    unknown = set(p) - {"prior_run", "eval_run", "params", "name"}
    if unknown:
        raise ParamError(f"unknown ceiling job field(s): {', '.join(sorted(unknown))}")
    if not p.get("prior_run"):
        raise ParamError("choose a prior whose ceiling to measure")
    plan = plan_ceiling(ws, p["prior_run"], p.get("eval_run"), p.get("params"))
    for rid in (plan.prior.id, plan.eval.id if plan.eval else None):
        if rid:
            check_run_weights(ws, rid)
    return {"prior_run": plan.prior.id, "eval_run": plan.eval.id if plan.eval else "none", "params": plan.params,
            "name": str(p.get("name") or "")}


@job_kind("ceiling", validate=_validate_ceiling,
          help="a prior's ceiling per judge: its projections of the private training images, judged "
               "(a diagnostic of the prior, never an attack)")
def _ceiling_job(params: dict, ctx: JobContext) -> dict:
    from .priors.ceiling import ceiling_run
    p = dict(params["params"])
    if p.get("device") == "auto":
        p["device"] = "cuda" if ctx.device.startswith("cuda") else "cpu"
    rec = ceiling_run(params["prior_run"], params["eval_run"], p, workspace=ctx.workspace, reporter=ctx.reporter,
                      name=params.get("name", ""))
    return {"run_id": rec.id}
