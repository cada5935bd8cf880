"""The job queue and its workers: JobManager (FIFO, daemon workers, one active job per session, state
in the workspace's SQLite through .records) and the progress sink that records a job's events."""
from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from ..params import ParamError
from ..progress import Cancelled, Reporter
from ..runs import RunError, Workspace, _owner_token, insert_leases, release_leases
from ..threads import fit_threads
from .kinds import JOB_KINDS, JobContext
from .records import (_LIVE, _LIVE_LOCK, _SCHEMA, ACTIVE, JOB_ID_RE, JobError, JobRecord, _clean, _jsonable,
                      _manager_alive, runs_in)

log = logging.getLogger("mivis.jobs")


def _user_errors() -> tuple[type[BaseException], ...]:
    from ..data import DataError
    from ..weights import WeightsError
    return (ParamError, DataError, RunError, WeightsError, JobError)



class _TrackingWorkspace(Workspace):
    def __init__(self, path: Path, on_create: Callable[[str], None]):
        super().__init__(path)
        self._on_create = on_create

    def create(self, *args, **kwargs):
        run = super().create(*args, **kwargs)
        self._on_create(run.id)
        return run


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
                    # the runs it needs are in use from now until the job ends (the registry refuses their delete)
                    insert_leases(con, needs, job_id, f"app job {label or kind} ({job_id})", _owner_token())
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
            if cols.get("status", "queued") not in ACTIVE:  # done, failed, cancelled, interrupted: runs are free
                release_leases(con, job_id)

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
