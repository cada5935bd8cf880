"""A tiny, complete workspace for the UI tests: two targets (full and RoLSS), an evaluation model, a
smoke prior, one GMI attack on each target and a layers analysis. Synthetic 32 px faces; built once
per test process (about half a minute on 2 cores) and copied for each user."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

DATA = {"dataset": "synthetic", "n_private": 6, "image_size": 32, "test_per_identity": 2}
TRAIN = {"arch": "resnet18", "epochs": 1, "batch_size": 16, "device": "cpu"}
ATTACK = {"identities": [0, 1, 2], "restarts": 2, "iterations": 8, "device": "cpu"}
# what the pages' URL parameters must say to use the same tiny settings
ATTACK_URL = "attack=gmi&gmi.identities=0,1,2&gmi.restarts=2&gmi.iterations=8&gmi.device=cpu"

_built: dict = {}


def _build() -> dict:
    from mivis.analysis import layers_run
    from mivis.attacks import attack_run
    from mivis.priors import train_prior
    from mivis.runs import Workspace
    from mivis.train import train_run
    path = Path(tempfile.mkdtemp(prefix="mivis-ui-world-"))
    atexit.register(shutil.rmtree, path, True)
    ws = Workspace(path)
    full = train_run("target", TRAIN, DATA, workspace=ws, name="tiny full")
    rolss = train_run("target", TRAIN, DATA, defenses={"skips": {}}, workspace=ws, name="tiny RoLSS")
    ev = train_run("eval", {**TRAIN, "arch": "vgg11", "lr": 1e-3}, DATA, workspace=ws, name="tiny judge")
    prior = train_prior("gmi", {"device": "cpu"}, DATA, preset="smoke", workspace=ws, name="smoke prior")
    a_full = attack_run("gmi", full.id, prior.id, params=ATTACK, eval_run=ev.id, workspace=ws, n_boot=200)
    a_rolss = attack_run("gmi", rolss.id, prior.id, params=ATTACK, eval_run=ev.id, workspace=ws, n_boot=200)
    lay = layers_run(full.id, a_full.id, {"snapshots": 0, "mi_samples": 6, "fi_samples": 12, "device": "cpu"},
                     workspace=ws)
    return {"path": path, "full": full.id, "rolss": rolss.id, "eval": ev.id, "prior": prior.id,
            "attack_full": a_full.id, "attack_rolss": a_rolss.id, "layers": lay.id}


def world_copy(dest: Path) -> dict:
    """A private copy of the tiny world at `dest` (ids unchanged)."""
    if not _built:
        _built.update(_build())
    shutil.copytree(_built["path"], dest)
    return {**_built, "path": dest}
