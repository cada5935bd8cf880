"""The human judge: "who is this?" votes on an attack's reconstructions, stored in the workspace registry.

A ballot is what voters see: one reconstruction per attacked identity (the restart the target found most
likely, as on the demo) and a gallery of one real private face per identity. For an item and the round's k,
the line-up is the attacked identity's face and k-1 other identities' faces, drawn by a seed (the round
number): the same k faces for every voter of a round (and for the machine judges, evaluation/lineup.py),
shown in an order shuffled per voter. A voter may pick a face or "none of them" (NONE). Votes live in the
workspace's SQLite (tables `votes`, `vote_rounds`, `vote_teacher`, `vote_lineups`, created here on the
registry's own connection) against the attack run, or against DEMO for the shipped demo's reconstructions (assets/demo/), and
survive restarts.

A teacher's round: a teacher key (MIVIS_TEACHER_KEY in the server's environment, or one created once and
stored hashed in the workspace) is needed to open a round (and set its k), reveal it, close it or start a new
one; the CLI, run by whoever owns the workspace, acts as the teacher. Votes are taken only while a round is
open, one per item and voter (a browser's id that survives reloads, ui/voter.py); nobody sees an answer until
the teacher reveals the round, which also ends its voting. Human top-1 accuracy gets a 95% identity bootstrap
(shown from MIN_IDENTITIES_FOR_INTERVAL voted identities on) and chance level 1/k.

No models are loaded: a finished attack run's reconstructions and its data split are all a ballot needs.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .params import ParamError
from .runs import DamagedRun, RunError, Workspace, on_delete

DEMO = "demo"
NONE = -1
K_DEFAULT = 5
K_MIN = 2
K_MAX = 10
GALLERY_MIN = 20  # a large private set: the attacked identities plus others up to this many faces
MIN_IDENTITIES_FOR_INTERVAL = 5  # a bootstrap over fewer voted identities reads "[100%, 100%]" after one vote
TEACHER_ENV = "MIVIS_TEACHER_KEY"
WAITING, OPEN, REVEALED, CLOSED = "waiting", "open", "revealed", "closed"  # a round's states

_SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    round INTEGER NOT NULL,
    item INTEGER NOT NULL,
    session TEXT NOT NULL,
    k INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    identity INTEGER NOT NULL,
    choice INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    created REAL NOT NULL,
    UNIQUE (run, round, item, session)
);
CREATE INDEX IF NOT EXISTS votes_run ON votes(run, round);
CREATE TABLE IF NOT EXISTS vote_rounds (
    run TEXT PRIMARY KEY,
    round INTEGER NOT NULL,
    reset REAL
);
CREATE TABLE IF NOT EXISTS vote_lineups (
    run TEXT PRIMARY KEY,
    scores TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS vote_teacher (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    salt TEXT NOT NULL,
    hash TEXT NOT NULL,
    created REAL NOT NULL
);
"""
_ROUND_COLUMNS = (("k", "INTEGER"), ("state", "TEXT"))  # added to vote_rounds tables of older workspaces


_READY: set[tuple[str, int]] = set()  # registries (path, inode) whose vote tables exist: a classroom polls often


def _connect(ws: Workspace):
    """The registry's own connection helper; the vote tables are created on first use (IF NOT EXISTS)."""
    try:
        key = (str(ws.db_path), os.stat(ws.db_path).st_ino)
    except OSError:
        key = None
    if key is None or key not in _READY:
        with ws._connect() as con:
            con.executescript(_SCHEMA)
            have = {r[1] for r in con.execute("PRAGMA table_info(vote_rounds)").fetchall()}
            for name, kind in _ROUND_COLUMNS:
                if name not in have:
                    try:
                        con.execute(f"ALTER TABLE vote_rounds ADD COLUMN {name} {kind}")
                    except Exception:  # another process added it meanwhile
                        pass
        if key is not None:
            _READY.add(key)
    return ws._connect()


@dataclass
class Ballot:
    """What voters judge: items (one reconstruction each) and a gallery of real faces, both uint8 (H, W, C)."""
    key: str                      # the attack run id, or DEMO
    title: str
    identity: list[int]           # the attacked identity of each item
    recon: list[np.ndarray]       # each item's reconstruction
    gallery: dict[int, np.ndarray]  # identity -> one real private face
    names: dict[int, str]         # identity -> its name in the data
    rows: list[int | None] = field(default_factory=list)  # each item's row in evaluation.json (None: the demo)
    machine: dict[str, list] = field(default_factory=dict)  # judge -> its verdict (bool or None) per item
    n_classes: int | None = None  # the private identities E and dlib choose from in their stored verdicts (1 of N)

    def __len__(self) -> int:
        return len(self.identity)

    @property
    def k_max(self) -> int:
        return min(K_MAX, len(self.gallery))

    def check_k(self, k: int) -> int:
        if not isinstance(k, (int, np.integer)) or not K_MIN <= k <= self.k_max:
            raise ParamError(f"k={k!r}: the number of candidate faces must be an integer in {K_MIN}..{self.k_max} "
                             f"(this ballot has {len(self.gallery)} real faces)")
        return int(k)

    def check_item(self, item: int) -> int:
        if not isinstance(item, (int, np.integer)) or not 0 <= item < len(self):
            raise ParamError(f"item {item!r} is not on the ballot of {self.key}: items are 0..{len(self) - 1}")
        return int(item)

    def candidates(self, item: int, k: int, seed: int = 0, voter: str | None = None) -> list[int]:
        """The line-up: the attacked identity plus k-1 others, drawn by (seed, item, k), the same faces for every
        voter of a round; with `voter`, in that voter's own order (neighbours cannot copy "it was face 3")."""
        item, k = self.check_item(item), self.check_k(k)
        truth = self.identity[item]
        others = sorted(c for c in self.gallery if c != truth)
        rng = np.random.default_rng([int(seed), item, k])
        picked = [truth] + [others[i] for i in rng.choice(len(others), k - 1, replace=False)]
        picked = [picked[i] for i in rng.permutation(k)]
        if voter is None:
            return picked
        mix = int.from_bytes(hashlib.sha256(f"{voter}:{self.key}:{seed}:{item}".encode()).digest()[:8], "big")
        return [picked[i] for i in np.random.default_rng(mix).permutation(k)]


def item_rows(identity, p_target) -> list[int]:
    """The ballot's items: per attacked identity (ascending), the row of its most likely reconstruction under
    the target (the first on ties). Works on the tensors or on evaluation.json's rows alike."""
    y, p = np.asarray(identity), np.asarray(p_target, np.float64)
    out = []
    for c in sorted(set(y.tolist())):
        idx = np.flatnonzero(y == c)
        out.append(int(idx[np.argmax(p[idx])]))
    return out


# --- building ballots ------------------------------------------------------------------------------------
def demo_ballot(folder: str | Path) -> Ballot:
    """The shipped demo's reconstructions (demo.json + PNGs): no workspace run, no torch."""
    from PIL import Image
    folder = Path(folder)
    try:
        spec = json.loads((folder / "demo.json").read_text())
        pairs = spec["pairs"]
    except (OSError, ValueError, KeyError) as e:
        raise ParamError(f"the demo in {folder} is missing or unreadable ({e}); build it with "
                         "`python scripts/make_demo.py`") from None

    def img(name: str) -> np.ndarray:
        with Image.open(folder / Path(name).name) as im:
            a = np.asarray(im)
        return a[:, :, None] if a.ndim == 2 else a

    ident = list(range(len(pairs)))
    machine = {"E": [p.get("correct") for p in pairs]}
    if pairs and all(isinstance(p.get("dlib"), dict) for p in pairs):  # demos built since the independent judge
        machine["dlib"] = [p["dlib"].get("correct") for p in pairs]
    return Ballot(DEMO, spec.get("title", "the demo"), ident, [img(p["recon"]) for p in pairs],
                  {i: img(p["real"]) for i, p in zip(ident, pairs)}, {i: p["identity"] for i, p in zip(ident, pairs)},
                  rows=[None] * len(pairs), machine=machine)


def run_ballot(ws: Workspace, run_id: str) -> Ballot:
    """A finished attack run: per attacked identity, the restart with the highest target likelihood."""
    from .data import load_split, to_uint8
    try:
        rec = ws.get(run_id)
    except DamagedRun:
        raise
    except RunError:
        raise ParamError(f"no attack run {run_id!r} in workspace {ws.path} (or use {DEMO!r} for the shipped "
                         "demo)") from None
    if rec.kind != "attack" or rec.status != "done":
        raise ParamError(f"run {run_id} is a {rec.status} {rec.kind} run; voting needs a finished attack run")
    t = rec.read_tensors("reconstructions.safetensors", ("p_target",))  # DamagedRun: named, one line
    y, p = t["y"].long(), t["p_target"].float()
    try:
        rows = json.loads(rec.file("evaluation.json").read_text())["per_reconstruction"]
    except (OSError, ValueError, KeyError):
        rows = []
    split = load_split(rec.config["data"])
    attacked = sorted(set(y.tolist()))
    items = item_rows(y.numpy(), p.numpy())
    others = [c for c in range(split.num_classes) if c not in set(attacked)]
    extra = max(0, GALLERY_MIN - len(attacked))
    if extra and others:
        rng = np.random.default_rng(int(rec.config["attack"]["params"].get("seed", 0)))
        others = sorted(rng.choice(others, min(extra, len(others)), replace=False).tolist())
    else:
        others = []
    pool = sorted(attacked + others)
    gallery = {c: to_uint8(split.private_images(c, "train")[:1])[0] for c in pool}
    machine = {}
    if isinstance(rows, list) and len(rows) == len(y) and all(isinstance(rows[i], dict) for i in items):
        for judge, field in (("E", "eval_top1"), ("dlib", "top1@dlib")):
            if all(field in rows[i] for i in items):  # a machine judge's verdicts shown next to the votes
                machine[judge] = [bool(rows[i][field]) for i in items]
    return Ballot(rec.id, rec.name or rec.id, [int(y[i]) for i in items], list(to_uint8(t["x"][items].float())),
                  gallery, {c: split.private_names[c] for c in pool}, rows=items, machine=machine,
                  n_classes=split.num_classes)


def demo_folder_default() -> Path:
    """The shipped demo (assets/demo/), or $MIVIS_DEMO as on the Home page."""
    from .paths import assets_dir
    import os
    return Path(os.environ.get("MIVIS_DEMO") or assets_dir() / "demo")


def load_ballot(ws: Workspace, key: str, demo_folder: str | Path | None = None) -> Ballot:
    if key == DEMO:
        return demo_ballot(demo_folder or demo_folder_default())
    return run_ballot(ws, key)


def sources(ws: Workspace) -> list[str]:
    """What can be voted on: the demo, then the finished attack runs (newest first)."""
    return [DEMO] + [r.id for r in ws.list(kind="attack", status="done")]


# --- rounds and votes ------------------------------------------------------------------------------------
def _check_key(ws: Workspace, key: str) -> str:
    if key == DEMO:
        return key
    try:
        rec = ws.get(key)
    except DamagedRun:
        raise
    except RunError:
        raise ParamError(f"no attack run {key!r} in workspace {ws.path} (or use {DEMO!r} for the shipped demo)") \
            from None
    if rec.kind != "attack":
        raise ParamError(f"run {key} is a {rec.kind} run; votes are on attack runs")
    return key


def _stored(key: str) -> str:
    """The key votes are stored under: a run id, or for the demo its content's hash ("demo@1a2b..."), so votes
    on an earlier build of assets/demo/ (other faces under the same item numbers) are never counted with these."""
    if key != DEMO:
        return key
    import hashlib
    try:
        digest = hashlib.sha256((demo_folder_default() / "demo.json").read_bytes()).hexdigest()[:12]
    except OSError:
        return key
    return f"{DEMO}@{digest}"


# --- the teacher ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Teacher:
    """Proof that the caller may open, reveal, close or restart rounds: from check_teacher (a key typed on the
    page) or Teacher.owner() (the CLI, run by whoever owns the workspace's files)."""
    how: str

    @staticmethod
    def owner() -> "Teacher":
        return Teacher("workspace owner (CLI)")


def _hash(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}:{key.strip()}".encode()).hexdigest()


def teacher_key_source(ws: Workspace) -> str | None:
    """Where the teacher key comes from: "env" (MIVIS_TEACHER_KEY), "workspace" (created once), or None yet."""
    if os.environ.get(TEACHER_ENV, "").strip():
        return "env"
    with _connect(ws) as con:
        row = con.execute("SELECT 1 FROM vote_teacher WHERE id = 1").fetchone()
    return "workspace" if row else None


def new_teacher_key(ws: Workspace, replace: bool = False) -> str:
    """Create the workspace's teacher key and return it (the only time it is shown; only its salted hash is
    stored). Refused when MIVIS_TEACHER_KEY sets it, or when one exists and `replace` is False (so the first
    person to open the page cannot take over a class whose teacher already has a key)."""
    if teacher_key_source(ws) == "env":
        raise ParamError(f"the teacher key is set by {TEACHER_ENV} in the server's environment; change it there")
    key = "-".join(secrets.token_hex(2) for _ in range(3))  # e.g. 3f1a-9c0e-77b2: readable aloud, 48 bits
    salt = secrets.token_hex(8)
    with _connect(ws) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            if con.execute("SELECT 1 FROM vote_teacher WHERE id = 1").fetchone() and not replace:
                raise ParamError("a teacher key exists already: type it in, or replace it from the server with "
                                 "`python -m mivis judge key --new`")
            con.execute("INSERT INTO vote_teacher (id, salt, hash, created) VALUES (1, ?, ?, ?) ON CONFLICT(id) DO "
                        "UPDATE SET salt = excluded.salt, hash = excluded.hash, created = excluded.created",
                        (salt, _hash(salt, key), time.time()))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return key


def check_teacher(ws: Workspace, key: str) -> Teacher:
    """The typed key against MIVIS_TEACHER_KEY or the stored hash; ParamError when it is wrong or none exists."""
    key = (key or "").strip()
    env = os.environ.get(TEACHER_ENV, "").strip()
    if env:
        if key and hmac.compare_digest(key.encode(), env.encode()):
            return Teacher("key")
        raise ParamError("wrong teacher key: only the teacher can open, reveal or restart a round")
    with _connect(ws) as con:
        row = con.execute("SELECT salt, hash FROM vote_teacher WHERE id = 1").fetchone()
    if row is None:
        raise ParamError("no teacher key yet: the teacher creates one on this page or with `python -m mivis judge "
                         "key --new`")
    if key and hmac.compare_digest(_hash(row["salt"], key), row["hash"]):
        return Teacher("key")
    raise ParamError("wrong teacher key: only the teacher can open, reveal or restart a round")


def _need_teacher(teacher) -> None:
    if not isinstance(teacher, Teacher):
        raise ParamError("only the teacher can change a round: give the teacher key")


# --- rounds and votes ------------------------------------------------------------------------------------
def round_info(ws: Workspace, key: str) -> dict:
    """The ballot's current round: {"round", "k", "state"}; state WAITING before the teacher opens one."""
    with _connect(ws) as con:
        row = con.execute("SELECT round, k, state FROM vote_rounds WHERE run = ?", (_stored(key),)).fetchone()
    if row is None:
        return {"round": 0, "k": None, "state": WAITING}
    if row["state"] is None or row["k"] is None:  # a round reset before teachers' rounds existed: the teacher
        return {"round": int(row["round"]), "k": None, "state": WAITING}  # opens the next one
    return {"round": int(row["round"]), "k": int(row["k"]), "state": row["state"]}


def current_round(ws: Workspace, key: str) -> int:
    return round_info(ws, key)["round"]


def _set_round(ws: Workspace, key: str, new: bool, k: int | None, state: str) -> dict:
    key = _stored(key)
    with _connect(ws) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute("SELECT round, k FROM vote_rounds WHERE run = ?", (key,)).fetchone()
            rnd = (int(row["round"]) if row else 0) + (1 if new or row is None else 0)
            k = k if k is not None else (row["k"] if row and row["k"] is not None else K_DEFAULT)
            con.execute("INSERT INTO vote_rounds (run, round, reset, k, state) VALUES (?, ?, ?, ?, ?) ON CONFLICT(run) "
                        "DO UPDATE SET round = excluded.round, reset = excluded.reset, k = excluded.k, "
                        "state = excluded.state", (key, rnd, time.time(), int(k), state))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return {"round": rnd, "k": int(k), "state": state}


def open_round(ws: Workspace, ballot: "Ballot", k: int, teacher: Teacher) -> dict:
    """The teacher opens a new round with k candidate faces: counting starts from zero, new line-ups are drawn;
    earlier rounds' votes stay stored but are no longer counted."""
    _need_teacher(teacher)
    _check_key(ws, ballot.key)
    return _set_round(ws, ballot.key, True, ballot.check_k(k), OPEN)


def reveal_round(ws: Workspace, key: str, teacher: Teacher) -> dict:
    """The teacher shows the answers: everyone sees what each reconstruction was; voting in this round ends."""
    return _end_round(ws, key, teacher, REVEALED)


def close_round(ws: Workspace, key: str, teacher: Teacher) -> dict:
    """The teacher ends the round without showing the answers (they can still be revealed later)."""
    return _end_round(ws, key, teacher, CLOSED)


def _end_round(ws: Workspace, key: str, teacher: Teacher, state: str) -> dict:
    _need_teacher(teacher)
    _check_key(ws, key)
    info = round_info(ws, key)
    if info["state"] == WAITING:
        raise ParamError("no round is open yet: open one first")
    return _set_round(ws, key, False, info["k"], state)


def reset_round(ws: Workspace, key: str, teacher: Teacher, k: int | None = None) -> int:
    """Start a new round (same k unless given); earlier votes are kept but no longer counted."""
    _need_teacher(teacher)
    _check_key(ws, key)
    if k is not None:
        k = load_ballot(ws, key).check_k(k)
    return _set_round(ws, key, True, k, OPEN)["round"]


def cast_vote(ws: Workspace, ballot: Ballot, item: int, session: str, k: int, choice: int) -> dict:
    """Store one vote of voter `session`: `choice` is a candidate identity or NONE. Refuses votes outside an open
    round, a k other than the round's, unknown items, choices outside the line-up, and a second vote on the
    same item by the same voter in the same round. Returns what was stored (the page shows no answer)."""
    _check_key(ws, ballot.key)
    if not isinstance(session, str) or not session.strip():
        raise ParamError("a vote needs the voter's id")
    item, k = ballot.check_item(item), ballot.check_k(k)
    info = round_info(ws, ballot.key)
    rnd = info["round"]
    if info["state"] != OPEN:
        raise ParamError({WAITING: "the teacher has not opened a round yet", REVEALED: f"round {rnd} is revealed: "
                          "its voting has ended", CLOSED: f"round {rnd} is closed"}.get(info["state"], "no open round"))
    if info["k"] is not None and k != info["k"]:
        raise ParamError(f"round {rnd} shows {info['k']} faces per reconstruction, not {k}")
    shown = ballot.candidates(item, k, rnd)
    if choice != NONE and choice not in shown:
        raise ParamError(f"choice {choice!r} was not among the {k} faces shown for item {item} "
                         f"({', '.join(ballot.names[c] for c in shown)}) nor 'none of them'")
    truth = ballot.identity[item]
    correct = choice == truth
    with _connect(ws) as con:
        con.execute("BEGIN IMMEDIATE")  # one writer at a time: the check and the insert are atomic
        try:
            dup = con.execute("SELECT 1 FROM votes WHERE run = ? AND round = ? AND item = ? AND session = ?",
                              (_stored(ballot.key), rnd, item, session)).fetchone()
            if dup is None:
                con.execute("INSERT INTO votes (run, round, item, session, k, seed, identity, choice, correct, "
                            "created) VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (_stored(ballot.key), rnd, item, session, k, rnd, truth, int(choice), int(correct), time.time()))
        finally:
            con.execute("COMMIT")
    if dup is not None:
        raise ParamError(f"you already voted on this reconstruction (item {item} of {ballot.key}, round {rnd})")
    return {"item": item, "round": rnd, "truth": truth, "choice": int(choice), "correct": bool(correct)}


# --- deleting a run with votes ----------------------------------------------------------------------------
def vote_counts(ws: Workspace, run_ids) -> dict[str, int]:
    """run id -> how many votes (all rounds) are stored against it; runs without votes are left out."""
    ids = list(run_ids)
    if not ids:
        return {}
    with _connect(ws) as con:
        rows = con.execute(f"SELECT run, COUNT(*) AS n FROM votes WHERE run IN ({','.join('?' * len(ids))}) "
                           "GROUP BY run", ids).fetchall()
    return {r["run"]: int(r["n"]) for r in rows}


def check_delete(ws: Workspace, run_ids, cascade: bool) -> None:
    """Called by Workspace.delete before anything is deleted: runs with class votes go only with cascade."""
    held = vote_counts(ws, run_ids)
    if held and not cascade:
        rid, n = next(iter(held.items()))
        raise RunError(f"run {rid} has {n} class vote(s) from Be the judge; deleting it deletes them: confirm a "
                       "cascade (`runs delete --cascade`) to delete the votes too")


def drop_votes(con, run_ids) -> None:
    """Delete the votes and round of these runs, on the caller's open transaction (Workspace.delete's)."""
    ids = list(run_ids)
    if ids:
        try:
            con.executemany("DELETE FROM votes WHERE run = ?", [(i,) for i in ids])
            con.executemany("DELETE FROM vote_rounds WHERE run = ?", [(i,) for i in ids])
            con.executemany("DELETE FROM vote_lineups WHERE run = ?", [(i,) for i in ids])
        except Exception as e:  # no vote tables yet in this workspace: nothing to drop
            if "no such table" not in str(e):
                raise


def votes(ws: Workspace, key: str, round: int | None = None) -> list[dict]:
    rnd = current_round(ws, key) if round is None else round
    with _connect(ws) as con:
        rows = con.execute("SELECT item, session, k, seed, identity, choice, correct, created FROM votes "
                           "WHERE run = ? AND round = ? ORDER BY id", (_stored(key), rnd)).fetchall()
    return [dict(r) for r in rows]


def voted_items(ws: Workspace, key: str, session: str) -> set[int]:
    return set(my_votes(ws, key, session))


def my_votes(ws: Workspace, key: str, session: str) -> dict[int, int]:
    """This voter's votes in the current round: item -> choice (NONE for 'none of them')."""
    with _connect(ws) as con:
        rows = con.execute("SELECT item, choice FROM votes WHERE run = ? AND round = ? AND session = ?",
                           (_stored(key), current_round(ws, key), session)).fetchall()
    return {int(r["item"]): int(r["choice"]) for r in rows}


def tally(ws: Workspace, key: str, n_boot: int = 2000, seed: int = 0) -> dict:
    """Human top-1 accuracy of the current round: the share of votes naming the attacked identity, with a 95%
    bootstrap over identities; chance = mean of 1/k over the votes; the share of 'none of them'."""
    _check_key(ws, key)
    v = votes(ws, key)
    info = round_info(ws, key)
    out = {"run": key, "round": info["round"], "k": info["k"], "state": info["state"], "votes": len(v),
           "voters": len({r["session"] for r in v}), "items": len({r["item"] for r in v})}
    if not v:
        return out | {"accuracy": None, "chance": None, "none_share": None}
    from .evaluation.bootstrap import bootstrap_mean  # here: reading votes (Home) loads no torch
    correct = np.array([r["correct"] for r in v], float)
    groups = np.array([r["identity"] for r in v])
    out["accuracy"] = bootstrap_mean(correct, groups, n_boot, seed)
    if len(set(groups.tolist())) < MIN_IDENTITIES_FOR_INTERVAL:  # no "[100%, 100%]" after one vote
        out["accuracy"] = out["accuracy"] | {"lo": None, "hi": None}
    out["chance"] = float(np.mean([1 / r["k"] for r in v]))
    out["none_share"] = float(np.mean([r["choice"] == NONE for r in v]))
    return out


def item_votes(ws: Workspace, key: str) -> dict[int, list[bool]]:
    """Current round: item -> the correctness of each vote on it."""
    out: dict[int, list[bool]] = {}
    for r in votes(ws, key):
        out.setdefault(r["item"], []).append(bool(r["correct"]))
    return out


def judges(ws: Workspace, key: str, evaluation: dict | None = None, n_boot: int = 2000) -> dict:
    """E vs dlib vs humans for one attack run (or the demo): evaluation.agreement.judge_table with this
    round's votes. `evaluation` is the run's evaluation.json (read when not given; the demo has none)."""
    from .evaluation.agreement import judge_table
    _check_key(ws, key)
    v = votes(ws, key)
    if key == DEMO:
        return judge_table([], v, machine_items=demo_ballot(demo_folder_default()).machine, n_boot=n_boot)
    if evaluation is None:
        from .evaluation.compare import load_evaluation
        evaluation = load_evaluation(ws, key)[1]
    try:
        rows = evaluation["per_reconstruction"]
        items = item_rows([r["identity"] for r in rows], [r["p_target"] for r in rows])
        table = judge_table(rows, v, item_rows=items, n_boot=n_boot)
        _headline_intervals(table, evaluation)
        return table
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ParamError(f"attack run {key}: its evaluation.json has malformed per-reconstruction rows "
                         f"({type(e).__name__}: {e}); judge it again with `python -m mivis evaluate rejudge "
                         f"{key}`") from None


def _headline_intervals(table: dict, evaluation: dict) -> None:
    """A machine judge's accuracy over the run's reconstructions is the run's own headline metric: show the
    interval stored with it (the run's bootstrap), not a second draw that differs in its last digit."""
    stored = {"E": evaluation.get("metrics", {}).get("attack_acc_top1")}
    stored.update({name: ex.get("attack_acc_top1") for name, ex in (evaluation.get("extra_judges") or {}).items()})
    for name, m in stored.items():
        a = table["accuracy"].get(name)
        if a and isinstance(m, dict) and a.get("unit") == "reconstruction" and m.get("n") == a["n"] \
                and m.get("value") is not None and abs(m["value"] - a["value"]) < 1e-9:
            a.update(lo=m["lo"], hi=m["hi"])


def lineup(ws: Workspace, ballot: Ballot, n_boot: int = 2000, compute: bool = False) -> dict:
    """The class, E and dlib on the current round's line-up (chance 1/k): evaluation.lineup.comparison with
    this round's votes. The machines' scores are read from the workspace (computed first when `compute`)."""
    from .evaluation import lineup as L
    info = round_info(ws, ballot.key)
    k = info["k"] or min(K_DEFAULT, ballot.k_max)
    if ballot.key == DEMO:
        scores = None
        why = "the demo ships reconstructions and faces only, no models to score its line-up"
    else:
        scores = L.ensure(ws, ballot.key) if compute else L.stored(ws, ballot.key)
        why = "not scored yet (the teacher's 'Open a round' or `python -m mivis judge lineup RUN` scores it)"
    out = L.comparison(scores, ballot, k, info["round"], votes(ws, ballot.key), n_boot)
    if scores is None:
        out["missing"] = {j: why for j in L.JUDGES}
    return out


on_delete(check_delete, drop_votes)  # Workspace.delete asks before a run with votes goes, and drops them with it
