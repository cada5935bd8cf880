"""The run registry: one SQLite database (WAL) plus one folder per run in a workspace.

Every trained model, prior, attack and analysis is a run. Rows hold kind, config, parents,
status, metrics, seed, data fingerprint, versions and timestamps; files live in the run's
folder and are written atomically. A run whose owning process died is shown as interrupted.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

DEFAULT_WORKSPACE = Path(__file__).resolve().parent.parent / "workspace"
ENV_VAR = "MIVIS_WORKSPACE"
STATUSES = ("running", "done", "failed", "cancelled", "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    parents TEXT NOT NULL DEFAULT '[]',
    metrics TEXT NOT NULL DEFAULT '{}',
    seed INTEGER,
    data_fingerprint TEXT,
    versions TEXT NOT NULL DEFAULT '{}',
    owner TEXT,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS runs_kind ON runs(kind);
CREATE INDEX IF NOT EXISTS runs_hash ON runs(config_hash);
"""


class RunError(LookupError):
    """A run that does not exist or cannot be used as asked."""


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("torch", "timm", "numpy", "safetensors"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:
                continue
        out[mod] = getattr(m, "__version__", "?")
    from . import __version__
    out["mivis"] = __version__
    return out


def _proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_token() -> str:
    pid = os.getpid()
    return f"{platform.node()}:{pid}:{_proc_start(pid) or ''}"


def _owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    try:
        host, pid_s, start = owner.split(":", 2)
        pid = int(pid_s)
    except ValueError:
        return False
    if host != platform.node():
        return True  # cannot tell for another host (shared storage): assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not start or _proc_start(pid) == start  # guards against pid reuse


@dataclass
class RunRecord:
    id: str
    kind: str
    name: str
    status: str
    config: dict
    parents: list[str]
    metrics: dict
    seed: int | None
    data_fingerprint: str | None
    versions: dict
    error: str | None
    created: float
    updated: float
    finished: float | None
    dir: Path = field(repr=False, default=None)

    def file(self, name: str) -> Path:
        return self.dir / name


class Workspace:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or os.environ.get(ENV_VAR) or DEFAULT_WORKSPACE).expanduser().resolve()
        self.runs_dir = self.path / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.path / "mivis.sqlite"
        with self._connect() as con:
            con.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA busy_timeout=30000")
        con.row_factory = sqlite3.Row
        return _Closing(con)

    # --- creating and updating -------------------------------------------------------------
    def create(self, kind: str, config: dict, *, parents: Iterable[str] = (), seed: int | None = None,
               data_fingerprint: str | None = None, name: str = "") -> "Run":
        now = time.time()
        run_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        parents = list(parents)
        for p in parents:
            self.get(p)  # refuse dangling parents
        (self.runs_dir / run_id).mkdir(parents=True)
        with self._connect() as con:
            con.execute(
                "INSERT INTO runs (id, kind, name, status, config, config_hash, parents, seed, "
                "data_fingerprint, versions, owner, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, kind, name, "running", json.dumps(config, default=str), config_hash(config),
                 json.dumps(parents), seed, data_fingerprint, json.dumps(versions()), _owner_token(),
                 now, now))
        run = Run(self, run_id)
        run.write_json("config.json", {"kind": kind, "config": config, "parents": parents, "seed": seed,
                                       "data_fingerprint": data_fingerprint})
        return run

    def _update(self, run_id: str, **cols: Any) -> None:
        cols["updated"] = time.time()
        for k in ("metrics", "config"):
            if k in cols and not isinstance(cols[k], str):
                cols[k] = json.dumps(cols[k], default=str)
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self._connect() as con:
            con.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*cols.values(), run_id))

    # --- reading -----------------------------------------------------------------------------
    def _record(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=row["id"], kind=row["kind"], name=row["name"], status=row["status"],
            config=json.loads(row["config"]), parents=json.loads(row["parents"]),
            metrics=json.loads(row["metrics"]), seed=row["seed"], data_fingerprint=row["data_fingerprint"],
            versions=json.loads(row["versions"]), error=row["error"], created=row["created"],
            updated=row["updated"], finished=row["finished"], dir=self.runs_dir / row["id"])

    def reap(self) -> list[str]:
        """Mark runs whose owning process is gone as interrupted; returns their ids."""
        with self._connect() as con:
            rows = con.execute("SELECT id, owner FROM runs WHERE status = 'running'").fetchall()
        dead = [r["id"] for r in rows if not _owner_alive(r["owner"])]
        for rid in dead:
            self._update(rid, status="interrupted", error="the process running it stopped", finished=time.time())
        return dead

    def get(self, run_id: str) -> RunRecord:
        self.reap()
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunError(f"no run {run_id!r} in workspace {self.path}")
        return self._record(row)

    def exists(self, run_id: str) -> bool:
        with self._connect() as con:
            return con.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def list(self, kind: str | None = None, status: str | None = None) -> list[RunRecord]:
        self.reap()
        q, args = "SELECT * FROM runs WHERE 1=1", []
        if kind:
            q += " AND kind = ?"; args.append(kind)
        if status:
            q += " AND status = ?"; args.append(status)
        with self._connect() as con:
            rows = con.execute(q + " ORDER BY created DESC", args).fetchall()
        return [self._record(r) for r in rows]

    def find(self, kind: str, config: dict, status: str = "done") -> RunRecord | None:
        """The newest finished run of this kind with exactly this config (for reuse)."""
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE kind = ? AND config_hash = ? AND status = ? "
                              "ORDER BY created DESC LIMIT 1", (kind, config_hash(config), status)).fetchone()
        return self._record(row) if row else None

    def children(self, run_id: str) -> list[RunRecord]:
        return [r for r in self.list() if run_id in r.parents]

    def delete(self, run_id: str) -> None:
        rec = self.get(run_id)
        if rec.status == "running":
            raise RunError(f"run {run_id} is still running; cancel it first")
        with self._connect() as con:
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(rec.dir, ignore_errors=True)


class _Closing:
    """sqlite3.Connection as a context manager that also closes (the stdlib one only commits)."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def __enter__(self) -> sqlite3.Connection:
        return self.con

    def __exit__(self, *exc) -> None:
        self.con.close()


class Run:
    """A handle for writing one run's files and status."""

    def __init__(self, workspace: Workspace, run_id: str):
        self.ws = workspace
        self.id = run_id
        self.dir = workspace.runs_dir / run_id

    def record(self) -> RunRecord:
        return self.ws.get(self.id)

    def path(self, name: str) -> Path:
        p = (self.dir / name).resolve()
        if self.dir.resolve() not in p.parents:
            raise RunError(f"file name {name!r} escapes the run folder")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        from .weights import atomic_path
        p = self.path(name)
        tmp = atomic_path(p)
        tmp.write_text(json.dumps(obj, indent=1, default=str))
        os.replace(tmp, p)
        return p

    def write_bytes(self, name: str, data: bytes) -> Path:
        from .weights import atomic_path
        p = self.path(name)
        tmp = atomic_path(p)
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return p

    def save_weights(self, tensors: dict, metadata: dict | None = None, name: str = "weights.safetensors") -> Path:
        from .weights import save_weights
        p = self.path(name)
        save_weights(p, tensors, metadata)
        return p

    def update_metrics(self, metrics: dict) -> None:
        merged = {**self.record().metrics, **metrics}
        self.ws._update(self.id, metrics=merged)

    def set_config(self, config: dict) -> None:
        """Record config details fixed while running (e.g. a resolved batch size)."""
        self.ws._update(self.id, config=config, config_hash=config_hash(config))

    def finish(self, metrics: dict | None = None) -> None:
        if metrics:
            self.update_metrics(metrics)
        self.ws._update(self.id, status="done", finished=time.time())

    def fail(self, error: str, status: str = "failed") -> None:
        self.ws._update(self.id, status=status, error=error[:2000], finished=time.time())

    def fail_from(self, error: BaseException) -> None:
        """Record why a run stopped: cancelled by the user, or failed with this error."""
        from .progress import Cancelled
        if isinstance(error, Cancelled):
            self.fail("cancelled by user", status="cancelled")
        else:
            self.fail(f"{type(error).__name__}: {error}")
