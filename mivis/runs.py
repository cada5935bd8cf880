"""The run registry: one SQLite database (WAL) plus one folder per run in a workspace.

Every trained model, prior, attack and analysis is a run. Rows hold kind, config, parents,
status, metrics, seed, data fingerprint, versions and timestamps; files live in the run's
folder and are written atomically. A run whose owning process died is shown as interrupted.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .paths import DEFAULT_WORKSPACE, ENV_VAR  # kept importable from here

STATUSES = ("running", "done", "failed", "cancelled", "interrupted")
# Records of higher layers that hang on runs register here (the registry never imports them): each guard is
# (check(ws, ids, cascade) -> raises RunError unless the runs may go, drop(con, ids) -> deletes its rows in
# the delete's transaction). mivis.votes registers the class's votes; the doors that delete import it.
DELETE_GUARDS: list = []


def on_delete(check, drop) -> None:
    if (check, drop) not in DELETE_GUARDS:
        DELETE_GUARDS.append((check, drop))

# every id `Workspace.create` makes: kind-YYYYMMDD-HHMMSS-xxxxxx; a registry row with any other id
# (a tampered or hand-edited database) is shown as damaged and its id is never used as a path
RUN_ID_RE = re.compile(r"[a-z][a-z0-9_]{0,31}-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
DB_NAME = "mivis.sqlite"
CONFIG_DAMAGE = "its config in the registry"  # how `damage` names a config column that is not a JSON object

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
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    holder TEXT NOT NULL,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    beat REAL NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS leases_key ON leases(key);
"""


class RunError(LookupError):
    """A run that does not exist or cannot be used as asked."""


class DamagedRun(RunError):
    """A run whose registry row or files are missing, corrupt or not what mivis wrote."""

    def __init__(self, run_id: str, what: str):
        self.run_id, self.what = run_id, what
        super().__init__(f"run {run_id} is damaged: {what}")


class RegistryError(RunError):
    """The workspace's registry (mivis.sqlite) is missing, unreadable or not a database."""


def valid_run_id(run_id: Any) -> bool:
    return isinstance(run_id, str) and RUN_ID_RE.fullmatch(run_id) is not None


# --- what each stored artifact must look like (checked by RunRecord.read_json / read_tensors) ------------
def _is_dict_rows(obj) -> bool:
    return all(isinstance(r, dict) for r in obj)


def _check_history(obj) -> str | None:
    if not isinstance(obj, list) or not _is_dict_rows(obj):
        return "is not a list of rows"
    return None


def _check_evaluation(obj) -> str | None:
    if not isinstance(obj, dict):
        return "is not a JSON object"
    want = {"judge": dict, "metrics": dict, "per_reconstruction": list, "extra_judges": dict}
    for k, t in want.items():
        if not isinstance(obj.get(k), t):
            return f"has no {k!r} {t.__name__}"
    j = obj["judge"]
    if not (isinstance(j.get("run"), str) and isinstance(j.get("arch"), str)):
        return "names no judge run and architecture"
    if not _is_dict_rows(obj["per_reconstruction"]):
        return "has malformed per-reconstruction rows"
    return None


def _check_object(*keys: str):
    def check(obj) -> str | None:
        if not isinstance(obj, dict):
            return "is not a JSON object"
        missing = [k for k in keys if k not in obj]
        return f"lacks {', '.join(repr(k) for k in missing)}" if missing else None
    return check


JSON_ARTIFACTS = {
    "history.json": _check_history,
    "evaluation.json": _check_evaluation,
    "prior.json": _check_object("net", "data"),
    "split.json": _check_object("private"),
    "layers.json": _check_object(),
    "config.json": _check_object("kind", "config"),
    "trace.json": _check_object(),
    "preview.json": _check_object(),
    "ceiling.json": _check_object("metrics", "rows"),
}
TENSOR_ARTIFACTS = {
    # x (N, C, H, W) reconstructions, y (N,) identities; the other per-row tensors have length N
    "reconstructions.safetensors": ("x", "y"),
    "projections.safetensors": ("x", "y"),  # a prior ceiling's projections of the private training images
}
MAX_ARTIFACT_BYTES = 512 * 2**20  # a JSON or PNG artifact larger than this is refused, not read


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
    damage: list[str] = field(default_factory=list)  # what is wrong with the registry row (empty: nothing)

    def file(self, name: str) -> Path:
        return self.dir / name

    # --- the one place artifacts are read: a problem becomes DamagedRun naming the run and the file ---
    def _artifact(self, name: str, optional: bool) -> Path | None:
        if not valid_run_id(self.id):
            raise DamagedRun(self.id, "its registry id is not a valid run id (tampered registry?)")
        p = self.dir / name
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            if optional:
                return None
            raise DamagedRun(self.id, f"{name} is missing") from None
        except OSError as e:
            raise DamagedRun(self.id, f"{name} cannot be read ({e.strerror or e})") from None
        if not p.is_file():
            raise DamagedRun(self.id, f"{name} is not a file")
        if size > MAX_ARTIFACT_BYTES:
            raise DamagedRun(self.id, f"{name} is {size / 2**20:.0f} MiB, more than mivis ever writes")
        return p

    def read_json(self, name: str, *, optional: bool = False, check=None):
        """A JSON artifact, checked against what mivis writes under that name (JSON_ARTIFACTS).
        Missing: DamagedRun, or None when `optional`. Corrupt or malformed: DamagedRun."""
        p = self._artifact(name, optional)
        if p is None:
            return None
        try:
            obj = json.loads(p.read_bytes().decode("utf-8"))
        except OSError as e:
            raise DamagedRun(self.id, f"{name} cannot be read ({e.strerror or e})") from None
        except (UnicodeDecodeError, ValueError) as e:
            raise DamagedRun(self.id, f"{name} is not valid JSON ({str(e).splitlines()[0][:120]})") from None
        check = check or JSON_ARTIFACTS.get(Path(name).name)
        problem = check(obj) if check else None
        if problem:
            raise DamagedRun(self.id, f"{name} {problem}")
        return obj

    def read_image(self, name: str, *, optional: bool = False) -> bytes | None:
        """An image artifact's bytes, after checking that it decodes and is at most MAX_PIXELS."""
        p = self._artifact(name, optional)
        if p is None:
            return None
        from .data._images import ImageRefused, check_image
        data = p.read_bytes()
        try:
            check_image(data)
        except ImageRefused as e:
            raise DamagedRun(self.id, f"{name}: {e}") from None
        return data

    def read_tensors(self, name: str, keys: Iterable[str] = ()) -> dict:
        """A safetensors artifact's tensors; the keys mivis writes (TENSOR_ARTIFACTS) plus `keys`
        must be there, with one row per reconstruction."""
        p = self._artifact(name, False)
        from .weights import WeightsError, load_tensors
        try:
            t, _ = load_tensors(p)
        except WeightsError as e:
            raise DamagedRun(self.id, f"{name}: {str(e).replace(str(p) + ': ', '')}") from None
        need = list(TENSOR_ARTIFACTS.get(Path(name).name, ())) + [k for k in keys]
        missing = [k for k in dict.fromkeys(need) if k not in t]
        if missing:
            raise DamagedRun(self.id, f"{name} has no tensor {', '.join(repr(k) for k in missing)}")
        if "x" in t and "y" in t:
            n = t["y"].shape[0] if t["y"].ndim == 1 else -1
            if t["x"].ndim != 4 or n != t["x"].shape[0] or any(
                    v.ndim < 1 or v.shape[0] != n for k, v in t.items() if k in need):
                raise DamagedRun(self.id, f"{name} has inconsistent shapes (x {tuple(t['x'].shape)}, "
                                          f"y {tuple(t['y'].shape)})")
        return t


@contextlib.contextmanager
def refused_as_damage(rec: RunRecord):
    """Loading a run's weights inside this block: a file or config it cannot load is a DamagedRun naming
    the run (used by the layers that load each kind: train.check_classifier_weights, priors' check)."""
    from .weights import WeightsError
    try:
        yield
    except WeightsError as e:
        raise DamagedRun(rec.id, str(e).replace(f"{rec.dir}/", "")) from None
    except (KeyError, TypeError, AttributeError) as e:
        raise DamagedRun(rec.id, f"its config cannot rebuild the model ({type(e).__name__}: {e})") from None


class Workspace:
    """The registry of one workspace folder. Opening it refuses, with a RegistryError, a workspace
    path that is not a folder, a mivis.sqlite that is not a database, and a registry that has
    vanished while its run folders are still there (never silently starts an empty one)."""

    def __init__(self, path: str | Path | None = None, *, create: bool = True):
        self.path = Path(path or os.environ.get(ENV_VAR) or DEFAULT_WORKSPACE).expanduser().resolve()
        if self.path.exists() and not self.path.is_dir():
            raise RegistryError(f"workspace {self.path} is not a folder")
        if not create and not (self.path / DB_NAME).is_file():  # a command that only reads creates nothing
            raise RegistryError(f"no mivis workspace at {self.path} (it has no {DB_NAME}); nothing was created")
        self.runs_dir = self.path / "runs"
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RegistryError(f"cannot use workspace {self.path}: {e.strerror or e}") from None
        self.db_path = self.path / DB_NAME
        if not self.db_path.exists():
            orphans = [d.name for d in self.runs_dir.iterdir() if valid_run_id(d.name)]
            if orphans:
                raise RegistryError(
                    f"the registry {self.db_path} is missing but {len(orphans)} run folder(s) are in "
                    f"{self.runs_dir} (e.g. {orphans[0]}); mivis does not start an empty registry over them: "
                    "restore mivis.sqlite (with its -wal file) or move the runs folder aside")
        with self._connect(create=True) as con:
            con.executescript(_SCHEMA)

    def _connect(self, create: bool = False) -> "_Con":
        """A connection to the registry. Only `__init__` may create the file: a registry deleted
        under a running app is reported, not recreated empty. sqlite errors become RegistryError."""
        if not create and not self.db_path.is_file():
            raise RegistryError(f"the registry {self.db_path} has vanished (deleted while in use?); run folders are "
                                "untouched: restore it, or restart mivis on a new workspace")
        try:
            con = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        except sqlite3.Error as e:
            raise RegistryError(f"cannot open the registry {self.db_path}: {e}") from None
        wrapped = _Con(con, self.db_path)
        try:
            wrapped.execute("PRAGMA journal_mode=WAL")
            wrapped.execute("PRAGMA busy_timeout=30000")
        except RegistryError:
            con.close()
            raise
        con.row_factory = sqlite3.Row
        return _Closing(wrapped)

    def run_dir(self, run_id: str) -> Path:
        """The folder of a run: only for a valid run id, always inside the workspace's runs/ folder."""
        if not valid_run_id(run_id):
            raise RunError(f"{str(run_id)[:80]!r} is not a valid run id; no file is touched for it")
        d = self.runs_dir / run_id
        if d.resolve().parent != self.runs_dir.resolve():
            raise RunError(f"the folder of run {run_id} resolves outside {self.runs_dir}; no file is touched")
        return d

    # --- creating and updating -------------------------------------------------------------
    def create(self, kind: str, config: dict, *, parents: Iterable[str] = (), seed: int | None = None,
               data_fingerprint: str | None = None, name: str = "") -> "Run":
        now = time.time()
        run_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        parents = list(parents)
        for p in parents:
            self.get(p)  # refuse dangling parents
        self.run_dir(run_id).mkdir(parents=True)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # its parents are leased by the new run while it runs (see `lease`)
            try:
                con.execute(
                    "INSERT INTO runs (id, kind, name, status, config, config_hash, parents, seed, "
                    "data_fingerprint, versions, owner, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (run_id, kind, name, "running", json.dumps(config, default=str), config_hash(config),
                     json.dumps(parents), seed, data_fingerprint, json.dumps(versions()), _owner_token(),
                     now, now))
                for p in parents:  # a parent deleted since the check above
                    if con.execute("SELECT 1 FROM runs WHERE id = ?", (p,)).fetchone() is None:
                        raise RunError(f"no run {p!r} in workspace {self.path}")
                insert_leases(con, parents, run_id, f"running {kind} run {run_id}", _owner_token())
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
                raise
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
            if cols.get("status", "running") != "running":  # finished, failed, cancelled: its parents are free
                release_leases(con, run_id)

    # --- reading -----------------------------------------------------------------------------
    def _record(self, row: sqlite3.Row) -> RunRecord:
        """A record from a registry row; a damaged column gives an empty value and a line in `damage`."""
        damage: list[str] = []

        def col(name: str, typ: type, empty):
            raw = row[name]
            try:
                v = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
            except ValueError:
                v = None
            if not isinstance(v, typ):
                damage.append(f"its {name} in the registry is not a JSON {typ.__name__}")
                return empty
            return v

        rid = row["id"]
        if valid_run_id(rid):
            d = self.runs_dir / rid
        else:
            damage.append("its registry id is not a valid run id (tampered registry?)")
            d = self.runs_dir / ".invalid-run-id"  # never created; reads of its files report the damage
        parents = col("parents", list, [])
        if not all(isinstance(p, str) for p in parents):
            damage.append("its parents in the registry are not run ids")
            parents = [p for p in parents if isinstance(p, str)]

        def num(name: str, typ=(int, float)):
            v = row[name]
            if v is not None and not isinstance(v, typ):
                damage.append(f"its {name} in the registry is not a number")
                return None
            return v

        status = row["status"] if row["status"] in STATUSES else "failed"
        if status != row["status"]:
            damage.append(f"its status {str(row['status'])[:40]!r} is not a run status")
        return RunRecord(
            id=str(rid), kind=str(row["kind"]), name=str(row["name"] or ""), status=status,
            config=col("config", dict, {}), parents=parents, metrics=col("metrics", dict, {}),
            seed=num("seed", int), data_fingerprint=row["data_fingerprint"], versions=col("versions", dict, {}),
            error=row["error"], created=num("created") or 0.0, updated=num("updated") or 0.0,
            finished=num("finished"), dir=d, damage=damage)

    def reap(self) -> list[str]:
        """Mark runs whose owning process is gone as interrupted; returns their ids."""
        with self._connect() as con:
            rows = con.execute("SELECT id, owner FROM runs WHERE status = 'running'").fetchall()
        dead = [r["id"] for r in rows if not _owner_alive(r["owner"])]
        for rid in dead:
            self._update(rid, status="interrupted", error="the process running it stopped", finished=time.time())
        return dead

    def get(self, run_id: str, *, damaged: bool = False) -> RunRecord:
        """The run's record. A row whose config column is damaged (`runs list` shows it as DAMAGED) cannot
        rebuild anything: it is refused as a DamagedRun naming the damage, unless `damaged=True` (to show or
        delete it). Other damaged columns read as empty values (listed in `damage`)."""
        self.reap()
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunError(f"no run {str(run_id)[:80]!r} in workspace {self.path}")
        rec = self._record(row)
        if not damaged and any(d.startswith(CONFIG_DAMAGE) for d in rec.damage):
            raise DamagedRun(rec.id, "; ".join(rec.damage) + " (`python -m mivis runs delete` removes it)")
        return rec

    def exists(self, run_id: str) -> bool:
        with self._connect() as con:
            return con.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def list(self, kind: str | None = None, status: str | None = None) -> list[RunRecord]:
        if status is not None and status not in STATUSES:
            raise RunError(f"status {str(status)[:40]!r} is not one of {', '.join(STATUSES)}")
        if kind is not None and not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", str(kind)):
            raise RunError(f"kind {str(kind)[:40]!r} is not a run kind (e.g. target, eval, prior, attack)")
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

    def descendants(self, run_id: str) -> list[RunRecord]:
        """Every run made from this one, directly or through others (children before grandchildren)."""
        runs = self.list()
        out, seen, frontier = [], {run_id}, [run_id]
        while frontier:
            nxt = []
            for r in runs:
                if r.id not in seen and any(p in frontier for p in r.parents):
                    seen.add(r.id)
                    out.append(r)
                    nxt.append(r.id)
            frontier = nxt
        return out

    def lease(self, run_ids: Iterable[str], holder: str, **kw) -> Lease:
        """Hold runs in use (see the module function `lease`)."""
        return lease(self, run_ids, holder, **kw)

    def in_use(self, run_id: str) -> list[str]:
        """Who uses this run now (the holders of its live leases)."""
        with self._connect() as con:
            return [h for _, h in live_leases(con, [run_id])]

    def delete(self, run_id: str, *, cascade: bool = False) -> list[str]:
        """Delete a run's row and folder; returns the ids deleted.

        Refused (RunError, nothing deleted) when the run or a run to be deleted with it is running,
        or when a live lease says something uses it (a queued or running job, a command, a sweep step, a
        running run made from it), naming the user. A run that finished runs were made
        from is deleted only with `cascade=True`, which deletes those runs (and theirs) too; so is a run
        that a registered delete guard protects (class votes: mivis.votes; the cascade drops what it
        guards). A row whose id is not a valid run id loses its row only; no file is touched for it."""
        rec = self.get(run_id, damaged=True)
        if not valid_run_id(rec.id):
            with self._connect() as con:
                con.execute("DELETE FROM runs WHERE id = ?", (rec.id,))
            return [rec.id]
        kids = self.descendants(rec.id)
        done_kids = [k for k in kids if k.status == "done"]
        if done_kids and not cascade:
            raise RunError(f"{len(done_kids)} finished run(s) were made from run {rec.id} "
                           f"({', '.join(k.id for k in done_kids[:4])}{', ...' if len(done_kids) > 4 else ''}); "
                           "deleting it breaks them: confirm a cascade to delete them too")
        doomed = [rec] + (kids if cascade else [])
        busy = [r for r in doomed if r.status == "running"]
        if busy:
            raise RunError(f"run {busy[0].id} is still running; cancel it first")
        ids = [r.id for r in doomed]
        dirs = [self.run_dir(i) for i in ids]
        for check, _ in DELETE_GUARDS:
            check(self, ids, cascade)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # no lease can be taken between the check and the delete
            try:
                using = live_leases(con, ids)
                if using:
                    rid, holder = using[0]
                    raise RunError(f"run {rid} is in use by {holder}; wait for it to finish or cancel it first")
                con.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in ids])
                con.executemany("DELETE FROM leases WHERE run_id = ?", [(i,) for i in ids])  # stale ones only
                for _, drop in DELETE_GUARDS:
                    drop(con, ids)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        return ids


# --- leases: which runs are in use, and by whom ------------------------------------------------------
# Whoever uses runs (an app job from submit to its end, a CLI command while it runs, a sweep step, a Ray
# task, a running run made from them) writes a lease row per run: a `key` naming the use (a job id, a run
# id, a random token), words for the refusal (`holder`) and the owning process (`owner`: host:pid:start time
# of the process, as for running runs). `delete` refuses a run with a live lease and removes stale ones.
# Crash safety: a lease of this host is live while its process is (pid alive and started when the lease
# says: a reused pid is told apart), checked at once, no waiting; a lease of another host (a Ray worker on
# shared storage) cannot be checked that way, so each process refreshes `beat` on the leases it holds every
# LEASE_BEAT_S seconds, and another host's lease is stale once its beat is LEASE_STALE_S seconds old.
LEASE_BEAT_S = 30.0
LEASE_STALE_S = 300.0
_HELD: dict[Path, set[str]] = {}  # registry file -> keys of the leases this process holds there
_HELD_LOCK = threading.Lock()
_BEATER: list[threading.Thread] = []


def _registry_file(con) -> Path | None:
    path = getattr(con, "_path", None)
    return Path(path) if path is not None else None


def insert_leases(con, run_ids: Iterable[str], key: str, holder: str, owner: str | None = None) -> None:
    """Lease `run_ids` under `key` on the caller's connection (inside its transaction)."""
    now = time.time()
    owner = owner or _owner_token()
    ids = list(dict.fromkeys(run_ids))
    con.executemany("INSERT OR REPLACE INTO leases (run_id, key, holder, owner, created, beat) VALUES (?,?,?,?,?,?)",
                    [(rid, key, holder[:300], owner, now, now) for rid in ids])
    db = _registry_file(con)
    if ids and db is not None and owner.split("|")[0] == _owner_token():
        with _HELD_LOCK:
            _HELD.setdefault(db, set()).add(key)
            if not _BEATER:
                _BEATER.append(threading.Thread(target=_beat_forever, name="mivis-lease-beat", daemon=True))
                _BEATER[0].start()


def release_leases(con, key: str) -> None:
    con.execute("DELETE FROM leases WHERE key = ?", (key,))
    db = _registry_file(con)
    with _HELD_LOCK:
        if db in _HELD:
            _HELD[db].discard(key)


def _beat_forever() -> None:
    while True:
        time.sleep(LEASE_BEAT_S)
        beat_once()


def beat_once() -> None:
    """Refresh `beat` on every lease this process holds (the lease thread calls it every LEASE_BEAT_S)."""
    with _HELD_LOCK:
        held = {db: sorted(keys) for db, keys in _HELD.items() if keys}
    for db, keys in held.items():
        try:  # mode=rw: a registry deleted meanwhile is never recreated (empty) by a heartbeat
            con = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=5, isolation_level=None)
        except sqlite3.Error:
            continue
        try:
            con.executemany("UPDATE leases SET beat = ? WHERE key = ?", [(time.time(), k) for k in keys])
        except sqlite3.Error:
            pass
        finally:
            con.close()


def _lease_alive(owner: str | None, beat) -> bool:
    proc = str(owner or "").split("|")[0]
    host = proc.split(":", 1)[0]
    if host and host != platform.node():
        return isinstance(beat, (int, float)) and time.time() - beat < LEASE_STALE_S
    return _owner_alive(proc)


def live_leases(con, run_ids: Iterable[str]) -> list[tuple[str, str]]:
    """(run id, holder) of every live lease on `run_ids`, oldest first; stale ones (see above) are removed.
    `con` is the caller's connection (inside its transaction)."""
    ids = list(dict.fromkeys(run_ids))
    rows = []
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        rows += con.execute(f"SELECT rowid, run_id, holder, owner, beat, created FROM leases WHERE run_id IN "
                            f"({','.join('?' * len(part))})", part).fetchall()
    out = []
    for r in sorted(rows, key=lambda r: (r["created"], r["rowid"])):
        if _lease_alive(r["owner"], r["beat"]):
            out.append((r["run_id"], r["holder"]))
        else:
            con.execute("DELETE FROM leases WHERE rowid = ?", (r["rowid"],))
    return out


class Lease:
    """Runs held in use under one key until `release()` (or the end of a `with` block)."""

    def __init__(self, ws: "Workspace", key: str, run_ids: list[str]):
        self.ws, self.key, self.run_ids = ws, key, run_ids

    def release(self) -> None:
        with self.ws._connect() as con:
            release_leases(con, self.key)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lease(ws: "Workspace", run_ids: Iterable[str], holder: str, *, key: str | None = None,
          missing_ok: bool = False) -> Lease:
    """Hold `run_ids` in use by `holder` (words: "CLI attack", "sweep step ..."): `delete` refuses them until
    the lease is released or its process is gone. A run that does not exist (any more) is a RunError, checked
    in the same transaction as the lease, unless `missing_ok` (then it is skipped)."""
    key = key or f"lease-{secrets.token_hex(6)}"
    ids = [r for r in dict.fromkeys(run_ids) if r]
    with ws._connect() as con:
        con.execute("BEGIN IMMEDIATE")  # no delete between the check and the lease
        try:
            have = [r for r in ids if con.execute("SELECT 1 FROM runs WHERE id = ?", (r,)).fetchone() is not None]
            gone = [r for r in ids if r not in have]
            if gone and not missing_ok:
                raise RunError(f"run {gone[0]} was deleted; choose another one")
            insert_leases(con, have, key, holder)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return Lease(ws, key, have)


class _Con:
    """A registry connection whose sqlite errors (garbage file, missing table, lock timeout) are
    RegistryError naming the file, so every page and command reports them in one line."""

    def __init__(self, con: sqlite3.Connection, path: Path):
        self._con, self._path = con, path

    def _wrap(self, fn, *args):
        try:
            return fn(*args)
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"the registry {self._path} is damaged or unreadable: {e}") from None

    def execute(self, *args):
        return self._wrap(self._con.execute, *args)

    def executemany(self, *args):
        return self._wrap(self._con.executemany, *args)

    def executescript(self, *args):
        return self._wrap(self._con.executescript, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


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
        self.dir = workspace.run_dir(run_id)

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
