"""The human judge: "who is this?" votes on an attack's reconstructions, stored in the workspace registry.

A ballot is what voters see: one reconstruction per attacked identity (the restart the target found most
likely, as on the demo) and a gallery of one real private face per identity. For an item and a choice of k,
the candidates are the attacked identity's face and k-1 other identities' faces, drawn and shuffled by a seed
(the round number), so every voter in a round sees the same k faces in the same order. A voter may pick a face
or "none of them" (NONE). Votes live in the workspace's SQLite (tables `votes` and `vote_rounds`, created here on
the registry's own connection) against the attack run, or against DEMO for the shipped demo's reconstructions
(assets/demo/), and survive restarts. One vote per item and browser session per round; a teacher resets a round
(the votes stay in the table, a new round starts counting). Human top-1 accuracy gets a 95% identity bootstrap
and chance level 1/k.

No models are loaded: a finished attack run's reconstructions and its data split are all a ballot needs.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .params import ParamError
from .runs import DamagedRun, RunError, Workspace

DEMO = "demo"
NONE = -1
K_DEFAULT = 5
K_MIN = 2
K_MAX = 10
GALLERY_MIN = 20  # a large private set: the attacked identities plus others up to this many faces

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
"""


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

    def candidates(self, item: int, k: int, seed: int = 0) -> list[int]:
        """The attacked identity plus k-1 others, drawn and shuffled by (seed, item, k): the same for every voter."""
        item, k = self.check_item(item), self.check_k(k)
        truth = self.identity[item]
        others = sorted(c for c in self.gallery if c != truth)
        rng = np.random.default_rng([int(seed), item, k])
        picked = [truth] + [others[i] for i in rng.choice(len(others), k - 1, replace=False)]
        return [picked[i] for i in rng.permutation(k)]


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
                  gallery, {c: split.private_names[c] for c in pool}, rows=items, machine=machine)


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


def current_round(ws: Workspace, key: str) -> int:
    with _connect(ws) as con:
        row = con.execute("SELECT round FROM vote_rounds WHERE run = ?", (_stored(key),)).fetchone()
    return int(row["round"]) if row else 0


def reset_round(ws: Workspace, key: str) -> int:
    """Start a new round for this ballot (a teacher's reset); earlier votes are kept but no longer counted."""
    _check_key(ws, key)
    key = _stored(key)
    with _connect(ws) as con:
        con.execute("BEGIN IMMEDIATE")
        row = con.execute("SELECT round FROM vote_rounds WHERE run = ?", (key,)).fetchone()
        new = (int(row["round"]) if row else 0) + 1
        con.execute("INSERT INTO vote_rounds (run, round, reset) VALUES (?, ?, ?) ON CONFLICT(run) DO UPDATE SET "
                    "round = excluded.round, reset = excluded.reset", (key, new, time.time()))
        con.execute("COMMIT")
    return new


def cast_vote(ws: Workspace, ballot: Ballot, item: int, session: str, k: int, choice: int) -> dict:
    """Store one vote: `choice` is a candidate identity or NONE. Refuses unknown items, choices outside the
    k shown faces, and a second vote on the same item by the same session in the same round."""
    _check_key(ws, ballot.key)
    if not isinstance(session, str) or not session.strip():
        raise ParamError("a vote needs the voter's session id")
    item, k = ballot.check_item(item), ballot.check_k(k)
    rnd = current_round(ws, ballot.key)
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
        raise ParamError(f"this session already voted on item {item} of {ballot.key} in round {rnd}")
    return {"item": item, "round": rnd, "truth": truth, "choice": int(choice), "correct": bool(correct)}


def votes(ws: Workspace, key: str, round: int | None = None) -> list[dict]:
    rnd = current_round(ws, key) if round is None else round
    with _connect(ws) as con:
        rows = con.execute("SELECT item, session, k, seed, identity, choice, correct, created FROM votes "
                           "WHERE run = ? AND round = ? ORDER BY id", (_stored(key), rnd)).fetchall()
    return [dict(r) for r in rows]


def voted_items(ws: Workspace, key: str, session: str) -> set[int]:
    with _connect(ws) as con:
        rows = con.execute("SELECT item FROM votes WHERE run = ? AND round = ? AND session = ?",
                           (_stored(key), current_round(ws, key), session)).fetchall()
    return {int(r["item"]) for r in rows}


def tally(ws: Workspace, key: str, n_boot: int = 2000, seed: int = 0) -> dict:
    """Human top-1 accuracy of the current round: the share of votes naming the attacked identity, with a 95%
    bootstrap over identities; chance = mean of 1/k over the votes; the share of 'none of them'."""
    _check_key(ws, key)
    v = votes(ws, key)
    out = {"run": key, "round": current_round(ws, key), "votes": len(v), "voters": len({r["session"] for r in v}),
           "items": len({r["item"] for r in v})}
    if not v:
        return out | {"accuracy": None, "chance": None, "none_share": None}
    from .evaluation.bootstrap import bootstrap_mean  # here: reading votes (Home) loads no torch
    correct = np.array([r["correct"] for r in v], float)
    groups = np.array([r["identity"] for r in v])
    out["accuracy"] = bootstrap_mean(correct, groups, n_boot, seed)
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
        return judge_table(rows, v, item_rows=items, n_boot=n_boot)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ParamError(f"attack run {key}: its evaluation.json has malformed per-reconstruction rows "
                         f"({type(e).__name__}: {e}); judge it again with `python -m mivis evaluate rejudge "
                         f"{key}`") from None
