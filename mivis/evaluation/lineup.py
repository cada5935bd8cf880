"""Judges on equal footing: E and dlib scored on the same k-face line-up as the class (votes.py).

A voter sees one reconstruction and k real faces (the attacked identity's and k-1 others', drawn per round)
and picks one: chance is 1/k. E's and dlib's stored verdicts answer another question, "which of all N
private identities is this?" (chance 1/N), so they are not comparable with the class's top-1. Here each
machine judge answers the class's question on the same items and the same k candidates:

- E (the evaluation model) picks the candidate identity with the highest logit for the reconstruction;
- dlib picks the candidate whose shown face (the very image the class sees) is nearest to the reconstruction
  in its 128-d face embedding.

Neither may answer "none of them", so a machine's line-up top-1 is an upper reading next to the class's.
The scores (E's logits and dlib's distances of every ballot item against every ballot face) do not depend on
k or the round: they are computed once per attack run (`compute`, a few seconds: E forward on the items, dlib
on the items and the gallery faces) and stored in the workspace's SQLite (table vote_lineups), so any round's
line-up is a lookup (`picks`).
"""
from __future__ import annotations

import json
import time

import numpy as np

from .bootstrap import bootstrap_mean

JUDGES = ("E", "dlib")


def compute(ws, run_id: str) -> dict:
    """Score every item of the run's ballot against every ballot face, by E and (when installed) dlib.
    A judge that cannot run is named with the reason under "missing" (nothing is invented for it)."""
    import torch

    from ..params import ParamError
    from ..runs import RunError
    from ..votes import run_ballot
    from . import dlib_judge
    from .judges import Judge
    b = run_ballot(ws, run_id)
    rec = ws.get(run_id)
    t = rec.read_tensors("reconstructions.safetensors", ("p_target",))
    x = t["x"][b.rows].float()
    gallery = sorted(b.gallery)
    out: dict = {"run": run_id, "items": list(b.rows), "identity": list(b.identity), "gallery": gallery,
                 "scores": {}, "missing": {}}
    eval_run = rec.config.get("eval_run")
    try:
        from ..train import load_classifier
        model, erec = load_classifier(ws, eval_run, "cpu")
        model.requires_grad_(False)
        judge = Judge("E", erec, model, next(model.parameters()).device, erec.config.get("preprocess", "none"))
        logits, _ = judge.score(x)
        out["scores"]["E"] = logits[:, gallery].tolist()
    except (ParamError, RunError, OSError, KeyError, TypeError) as e:
        out["missing"]["E"] = f"the evaluation model {eval_run} cannot be loaded ({e})"
    if dlib_judge.available():
        faces = torch.from_numpy(np.stack([b.gallery[c] for c in gallery])).permute(0, 3, 1, 2).float() / 127.5 - 1
        ex, eg = dlib_judge.embed(x), dlib_judge.embed(faces)
        out["scores"]["dlib"] = (-((ex[:, None, :] - eg[None, :, :]) ** 2).sum(-1)).tolist()  # nearer = higher
    else:
        out["missing"]["dlib"] = f"the independent judge is not installed ({dlib_judge.INSTALL})"
    return out


def store(ws, scores: dict) -> None:
    from ..votes import _connect
    with _connect(ws) as con:
        con.execute("INSERT INTO vote_lineups (run, scores, created) VALUES (?, ?, ?) ON CONFLICT(run) DO UPDATE "
                    "SET scores = excluded.scores, created = excluded.created",
                    (scores["run"], json.dumps(scores), time.time()))


def stored(ws, run_id: str) -> dict | None:
    from ..votes import _connect
    with _connect(ws) as con:
        row = con.execute("SELECT scores FROM vote_lineups WHERE run = ?", (run_id,)).fetchone()
    if row is None:
        return None
    try:
        s = json.loads(row["scores"])
        return s if isinstance(s, dict) and isinstance(s.get("scores"), dict) else None
    except ValueError:
        return None


def ensure(ws, run_id: str) -> dict:
    """The run's stored line-up scores, computed and stored first when missing (or when a judge that was
    missing can now run, e.g. dlib installed since)."""
    from . import dlib_judge
    s = stored(ws, run_id)
    if s is None or ("dlib" in s.get("missing", {}) and dlib_judge.available()):
        s = compute(ws, run_id)
        store(ws, s)
    return s


def picks(scores: dict, ballot, k: int, rnd: int) -> dict[str, list[int]]:
    """judge -> the candidate identity it picks for each ballot item in round rnd's k-face line-up."""
    col = {c: i for i, c in enumerate(scores["gallery"])}
    out = {}
    for j, m in scores["scores"].items():
        row = []
        for item in range(len(ballot)):
            cands = ballot.candidates(item, k, rnd)
            s = [m[item][col[c]] for c in cands]
            row.append(cands[int(np.argmax(s))])
        out[j] = row
    return out


def comparison(scores: dict | None, ballot, k: int, rnd: int, human_votes: list[dict], n_boot: int = 2000,
               seed: int = 0) -> dict:
    """Top-1 on the round's line-up (chance 1/k): the class per vote, each machine judge per item; 95%
    bootstrap over identities. When the class voted on only some items, each machine is also scored on
    those items alone (subset "voted"): the rows to set beside the class. Returns {"k", "chance", "rows":
    [{"judge", "value", "lo", "hi", "n", "unit", "items", "votes" (the class), "subset" ("all" | "voted")}],
    "missing": {judge: reason}}."""
    rows, missing = [], dict((scores or {}).get("missing", {}))
    voted = sorted({v["item"] for v in human_votes})
    if human_votes:
        m = bootstrap_mean([bool(v["correct"]) for v in human_votes], [v["identity"] for v in human_votes],
                           n_boot, seed)
        rows.append({"judge": "humans", **m, "unit": "vote", "items": len(voted), "votes": len(human_votes),
                     "subset": "voted"})
    if scores is not None:
        if scores.get("identity") != list(ballot.identity):
            missing = {j: "the stored line-up scores are for another ballot of this run" for j in JUDGES}
        else:
            for j, p in picks(scores, ballot, k, rnd).items():
                ok = [p[i] == ballot.identity[i] for i in range(len(ballot))]
                rows.append({"judge": j, **bootstrap_mean(ok, ballot.identity, n_boot, seed), "unit": "reconstruction",
                             "items": len(ok), "subset": "all"})
                if voted and len(voted) < len(ballot):
                    rows.append({"judge": j, **bootstrap_mean([ok[i] for i in voted],
                                                              [ballot.identity[i] for i in voted], n_boot, seed),
                                 "unit": "reconstruction", "items": len(voted), "subset": "voted"})
    return {"k": k, "chance": 1 / k, "rows": rows, "missing": missing}
