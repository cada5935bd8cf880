"""An evaluation model trained on lighting-normalised faces (per-image histogram equalisation).

ORL identities were photographed in sessions with characteristic lighting, so a judge that sees
only equalised images checks that attack "hits" are not lighting matches. The run is an ordinary
"eval" classifier run whose config adds "preprocess": "histeq"; `load_judge` applies the same
equalisation to every image it scores.
"""
from __future__ import annotations

import time

from ..data import Subset
from ..progress import NULL, Reporter
from ..runs import RunRecord, Workspace
from .judges import histeq


def _equalised(s: Subset) -> Subset:
    """Folder data stays lazy: equalisation is applied to every batch read."""
    return Subset(s.x.map(histeq) if s.streamed else histeq(s.x), s.y)


def train_lighting_judge(train_cfg: dict | None = None, data_cfg: dict | None = None, *,
                         workspace: Workspace | None = None, reporter: Reporter = NULL, name: str = "") -> RunRecord:
    from ..models import count_params
    from ..train import Trainer, accuracy, prepare_training
    ws = workspace or Workspace()
    cfg, split, train_set, test_set, mcfg, defenses, model, _ = prepare_training("eval", train_cfg, data_cfg,
                                                                                  workspace=ws)
    eq_train, eq_test = _equalised(train_set), _equalised(test_set)
    config = {"role": "eval", "train": cfg, "data": split.config, "model": mcfg, "preprocess": "histeq"}
    run = ws.create("eval", config, seed=cfg["seed"], data_fingerprint=split.fingerprint,
                    name=name or f"eval {cfg['arch']} (histogram-equalised)")
    run.write_json("split.json", split.record())
    try:
        trainer = Trainer(model, eq_train, cfg, defenses, eq_test, reporter)
        t0 = time.monotonic()
        history = trainer.fit()
        final = trainer.model
        run.save_weights(final.state_dict(), {"arch": mcfg["arch"], "model_config": mcfg, "run": run.id})
        run.write_json("history.json", history)
        run.finish({"natural_acc": accuracy(final, eq_test), "train_acc": history[-1]["train_acc"],
                    "train_seconds": round(time.monotonic() - t0, 2), "params": count_params(final),
                    "device": str(trainer.device), "preprocess": "histeq"})
    except BaseException as e:
        run.fail_from(e)
        raise
    return run.record()
