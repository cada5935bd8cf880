"""Training classifiers: target, evaluation and public pre-training models, with defense hooks.

`train_run` validates everything, creates a registry run, trains with progress and cancel,
and saves safetensors weights plus metrics. `fit` is the loop itself, reusable by defenses.
"""
from __future__ import annotations

import math
from pathlib import Path
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import defenses as _defenses  # noqa: F401  (registers the structural defenses that model_from_config applies)
from .augment import LEVELS, augment_to
from .data import FaceSplit, Subset, batches, load_split, sequential
from .device import autocast, prepare, resolve_device, to_device
from .models import (ARCHITECTURES, ArchChoices, Classifier, count_params, model_config, model_for_loading,
                     model_from_config,
                     same_architecture)
from .params import Param, ParamError, ParamSet
from .progress import NULL, Reporter
from .runs import RunRecord, Workspace

ROLES = ("target", "eval", "public")
CLASSIFIER_KINDS = ROLES

TRAIN_PARAMS = ParamSet([
    Param("arch", str, "resnet18", "classifier architecture (or any timm model name, e.g. timm:convnext_atto)",
          choices=ArchChoices(ARCHITECTURES.names())),
    Param("epochs", int, 30, "training epochs", min=1, max=1000),
    Param("batch_size", int, 32, "images per step", min=1, max=4096),
    Param("optimizer", str, "adamw", "optimiser", choices=("adamw", "adam", "sgd")),
    Param("lr", float, 2e-3, "peak learning rate", min=1e-6, max=10.0),
    Param("weight_decay", float, 5e-4, "weight decay", min=0.0, max=1.0),
    Param("schedule", str, "onecycle", "learning-rate schedule", choices=("onecycle", "cosine", "constant")),
    Param("augment", str, "standard", "augmentation strength", choices=LEVELS),
    Param("seed", int, 0, "seed of initialisation, shuffling and augmentation", min=0, max=2**31 - 1),
    Param("device", str, "auto", "where to train", choices=("auto", "cpu", "cuda")),
    Param("init_run", str, None, "start from the weights of this run (e.g. a public pre-trained model); "
          "the head is re-initialised when the class count differs", optional=True),
    Param("init_weights", str, None, "start the body from a local timm checkpoint (safetensors, e.g. ImageNet "
          "weights you have on disk; nothing downloads); the head is new", optional=True),
])


@dataclass
class TrainResult:
    model: Classifier
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


@torch.no_grad()
def accuracy(model: nn.Module, data: Subset, device: torch.device | None = None, batch: int = 256) -> float:
    if len(data) == 0:
        return float("nan")
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    correct = 0
    for i, xb in zip(range(0, len(data), batch), sequential(data.x, batch, device)):
        x = to_device(xb, device)
        with autocast(device):
            correct += (model(x).argmax(1).cpu() == data.y[i:i + batch]).sum().item()
    model.train(was)
    return correct / len(data)


def _optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"], nesterov=True)
    cls = torch.optim.AdamW if cfg["optimizer"] == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])


def _lr_at(cfg: dict, step: int, total: int) -> float:
    frac = step / max(1, total)
    if cfg["schedule"] == "constant":
        return cfg["lr"]
    if cfg["schedule"] == "cosine":
        return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * frac))
    warm = 0.25  # one-cycle: linear warm-up, cosine anneal
    if frac < warm:
        return cfg["lr"] * (0.04 + 0.96 * frac / warm)
    return cfg["lr"] * (0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm))) * 0.999 + 0.001)


class Trainer:
    """One training loop; defenses see it through their hooks (e.g. to swap the loss phase)."""

    def __init__(self, model: Classifier, train: Subset, cfg: dict, defenses=(), test: Subset | None = None,
                 reporter: Reporter = NULL):
        self.cfg, self.train_set, self.test_set = cfg, train, test
        self.defenses = list(defenses)
        self.reporter = reporter
        self.device = resolve_device(cfg["device"])
        self.model = prepare(model, self.device)
        self.main_epochs = cfg["epochs"]
        self.total_epochs = cfg["epochs"] + sum(d.extra_epochs() for d in self.defenses)
        self.epoch = 0
        self.lr_scale = 1.0  # a defense may lower it for an adaptation phase
        self._apply_trainable()

    def _apply_trainable(self) -> None:
        allowed = None
        for d in self.defenses:
            names = d.trainable_names(self.model)
            if names is not None:
                allowed = names if allowed is None else allowed & names
        for name, p in self.model.named_parameters():
            p.requires_grad_(allowed is None or name in allowed)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ParamError("no parameter is left to train: the freeze depth covers the whole model")
        old = getattr(self, "optimizer", None)
        self.optimizer = _optimizer(params, self.cfg)
        if old is not None:  # a mid-training switch (TTS) keeps the optimiser state of surviving params
            for p in params:
                if p in old.state:
                    self.optimizer.state[p] = old.state[p]
        self._param_ids = [id(p) for p in self.model.parameters()]

    def _set_train_mode(self) -> None:
        self.model.train()
        for d in self.defenses:
            for m in d.frozen_modules(self.model):
                m.eval()

    def fit(self) -> list[dict]:
        g = torch.Generator().manual_seed(self.cfg["seed"])
        n, bs = len(self.train_set), min(self.cfg["batch_size"], len(self.train_set))
        steps_per_epoch = max(1, n // bs)  # drop the ragged last batch: BatchNorm needs > 1 sample
        total = steps_per_epoch * self.main_epochs
        history, step = [], 0
        t0 = time.monotonic()
        for epoch in range(self.total_epochs):
            self.epoch = epoch
            for d in self.defenses:
                new = d.on_epoch_start(epoch, self.model, self)
                # a new model, or one edited in place (TTS drops projections): re-place and re-plan
                if new is not self.model or [id(p) for p in new.parameters()] != self._param_ids:
                    self.model = prepare(new, self.device)
                    self._apply_trainable()
            self._set_train_mode()
            order = torch.randperm(n, generator=g)
            loss_sum, correct, seen = 0.0, 0, 0
            # the same seeded order either way; folder data is read ahead by DataLoader workers
            feed = batches(self.train_set.x, self.train_set.y,
                           (order[b * bs:(b + 1) * bs] for b in range(steps_per_epoch)), self.device)
            for b, (xb, yb) in enumerate(feed):
                self.reporter.check()
                x = augment_to(xb, self.cfg["augment"], g, self.device, on_device=self.train_set.streamed)
                y = yb.to(self.device)
                # appended defense epochs (e.g. CALoR's adaptation) run at a constant lr * lr_scale
                base_lr = self.cfg["lr"] if epoch >= self.main_epochs else _lr_at(self.cfg, min(step, total), total)
                lr = base_lr * self.lr_scale
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                with autocast(self.device):
                    logits = self.model(x)
                    loss = None  # a defense may replace cross-entropy (the later one wins)
                    for d in self.defenses:
                        t = d.task_loss(logits.float(), y, epoch=epoch, trainer=self)
                        loss = loss if t is None else t
                    if loss is None:
                        loss = F.cross_entropy(logits.float(), y)
                    for d in self.defenses:
                        loss = d.loss(loss, model=self.model, x=x, y=y, logits=logits, epoch=epoch, trainer=self)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                                             "lower the learning rate")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                step += 1
                loss_sum += loss.item() * len(y)
                correct += (logits.argmax(1) == y).sum().item()
                seen += len(y)
                self.reporter.report(phase="train", epoch=epoch + 1, epochs=self.total_epochs, step=b + 1,
                                     steps=steps_per_epoch, loss=loss.item(), lr=lr,
                                     elapsed=time.monotonic() - t0)
            row = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen,
                   "elapsed": time.monotonic() - t0}
            if self.test_set is not None:
                row["test_acc"] = accuracy(self.model, self.test_set, self.device)
            history.append(row)
            self.reporter.report(force=True, phase="epoch", epochs=self.total_epochs, **row)
        self.model.eval()
        return history


def _public_holdout(split: FaceSplit, seed: int) -> tuple[Subset, Subset]:
    """One seeded image per public identity held out to validate public pre-training."""
    g = torch.Generator().manual_seed(seed)
    hold = []
    for c in split.public.y.unique():
        idx = (split.public.y == c).nonzero().flatten()
        if len(idx) > 1:
            hold.append(idx[torch.randint(len(idx), (1,), generator=g)].item())
    mask = torch.zeros(len(split.public), dtype=torch.bool)
    mask[hold] = True
    return split.public.take(~mask), split.public.take(mask)


def prepare_training(role: str, train_cfg: dict | None, data_cfg: dict | None,
                     arch_params: dict | None = None, defenses: dict | None = None,
                     workspace: Workspace | None = None):
    """Validate every setting and build the model: all refusals happen here, before compute."""
    from .defenses import instantiate
    if role not in ROLES:
        raise ParamError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    cfg = TRAIN_PARAMS.validate(train_cfg, context="training")
    resolve_device(cfg["device"])  # e.g. cuda without a GPU: refused before a run exists
    split = load_split(data_cfg)
    if role == "public":
        train_set, test_set = _public_holdout(split, cfg["seed"])
        num_classes = len(split.public_names)
    else:
        train_set, test_set, num_classes = split.train, split.test, split.num_classes
    c, h, _ = split.image_shape
    mcfg = model_config(cfg["arch"], num_classes, c, h, arch_params, defenses)
    if mcfg["defenses"]:  # runs stored without it were trained by method version 1 (see defenses/base.py)
        from .defenses.base import METHOD_VERSION
        mcfg["defense_version"] = METHOD_VERSION
    defense_objs = instantiate(mcfg["defenses"], mcfg)
    init = None
    if cfg["init_run"]:
        if workspace is None:
            raise ParamError("init_run needs a workspace")
        init = workspace.get(cfg["init_run"])
        if init.kind not in CLASSIFIER_KINDS or init.status != "done":
            raise ParamError(f"init_run {init.id} is a {init.status} {init.kind} run; a finished classifier is needed")
        classifier_config(init)
        if not same_architecture(init.config["model"]["arch"], cfg["arch"]):
            raise ParamError(f"init_run {init.id} is a {init.config['model']['arch']}, not a {cfg['arch']}")
    if cfg["init_weights"]:
        if cfg["init_run"]:
            raise ParamError("init_weights and init_run both set the starting weights; choose one")
        from .pretrained import file_sha256
        path = Path(cfg["init_weights"]).expanduser()
        if not path.is_file():
            raise ParamError(f"init_weights: {path} does not exist or is not a file")
        cfg["init_weights"] = str(path.resolve())
        mcfg["init_weights_sha256"] = file_sha256(path)  # the run's identity follows the file's content
    torch.manual_seed(cfg["seed"])
    model = model_from_config(mcfg, phase="initial")
    for d in defense_objs:
        d.check_training(cfg, model)
    # record every defense's full, resolved parameters (defaults included) in the run's config
    mcfg["defenses"] = {d.name: dict(d.p) for d in defense_objs}
    return cfg, split, train_set, test_set, mcfg, defense_objs, model, init


def load_init_weights(model: Classifier, ws: Workspace, init: RunRecord) -> None:
    """Copy the body (and the head if shapes agree) from a finished run, e.g. public pre-training."""
    src = load_classifier(ws, init.id)[0]
    state = {k: v for k, v in src.state_dict().items()}
    own = model.state_dict()
    take = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = [k for k in own if k not in take and not k.startswith("head")]
    if skipped:
        raise ParamError(f"init_run {init.id} does not fit this model: {len(skipped)} body tensors differ "
                         f"(e.g. {skipped[0]})")
    model.load_state_dict(take, strict=False)


def _run_config(role: str, cfg: dict, split: FaceSplit, mcfg: dict) -> dict:
    return {"role": role, "train": cfg, "data": split.config, "model": mcfg}


def training_config(role: str, train_cfg: dict | None = None, data_cfg: dict | None = None,
                    arch_params: dict | None = None, defenses: dict | None = None,
                    workspace: Workspace | None = None) -> dict:
    """The config `train_run` would record for these settings (for finding a run to reuse)."""
    cfg, split, _, _, mcfg, _, _, _ = prepare_training(role, train_cfg, data_cfg, arch_params, defenses, workspace)
    return _run_config(role, cfg, split, mcfg)


# knobs added after runs were stored, with the value a run stored without the key was trained with:
# (where: "arch_params" or a defense's name, the knob, that value)
ADDED_KNOBS = (("arch_params", "zero_init_last", True), ("skips", "layer3_split", False))


def as_recorded_before(config: dict) -> dict | None:
    """`config` as a run stored before ADDED_KNOBS existed recorded it (those keys absent where they hold the
    value such a run was trained with), so reuse finds older runs of the same training; None if it is the same."""
    import copy
    old = copy.deepcopy(config)
    model = old.get("model") or {}
    for where, name, value in ADDED_KNOBS:
        params = model.get("arch_params") if where == "arch_params" else (model.get("defenses") or {}).get(where)
        if isinstance(params, dict) and name in params and params[name] == value:
            del params[name]
    return None if old == config else old


def train_run(role: str, train_cfg: dict | None = None, data_cfg: dict | None = None, *,
              arch_params: dict | None = None, defenses: dict | None = None,
              workspace: Workspace | None = None, reporter: Reporter = NULL, name: str = "") -> RunRecord:
    ws = workspace or Workspace()
    cfg, split, train_set, test_set, mcfg, defense_objs, model, init = prepare_training(
        role, train_cfg, data_cfg, arch_params, defenses, ws)
    if init is not None:
        load_init_weights(model, ws, init)
    if cfg["init_weights"]:
        from .pretrained import load_pretrained_body
        load_pretrained_body(model, cfg["init_weights"], cfg["arch"])  # refusals before any run exists
    config = _run_config(role, cfg, split, mcfg)
    run = ws.create(role, config, parents=[init.id] if init else [], seed=cfg["seed"],
                    data_fingerprint=split.fingerprint, name=name or f"{role} {cfg['arch']}")
    run.write_json("split.json", split.record())
    try:
        trainer = Trainer(model, train_set, cfg, defense_objs, test_set, reporter)
        t0 = time.monotonic()
        history = trainer.fit()
        seconds = time.monotonic() - t0
        final = trainer.model
        run.save_weights(final.state_dict(), {"arch": mcfg["arch"], "model_config": mcfg, "run": run.id})
        run.write_json("history.json", history)
        metrics = {"natural_acc": accuracy(final, test_set), "train_acc": history[-1]["train_acc"],
                   "train_seconds": round(seconds, 2), "params": count_params(final),
                   "trainable_params": sum(p.numel() for p in final.parameters() if p.requires_grad),
                   "device": str(trainer.device)}
        run.finish(metrics)
    except BaseException as e:
        run.fail_from(e)
        raise
    return run.record()


def classifier_config(rec: RunRecord) -> dict:
    """A classifier run's model config, checked enough to rebuild the model and its data (a registry row
    edited by hand: DamagedRun naming the run, not a KeyError later)."""
    from .runs import DamagedRun
    m = rec.config.get("model")
    ints = ("num_classes", "in_chans", "img_size")
    if not isinstance(m, dict) or not isinstance(m.get("arch"), str) \
            or not all(isinstance(m.get(k), int) and not isinstance(m.get(k), bool) for k in ints) \
            or not isinstance(rec.config.get("data"), dict):
        raise DamagedRun(rec.id, "its config has no usable model (arch, num_classes, in_chans, img_size) or data "
                                 "description, so it cannot be rebuilt")
    return m


def load_classifier(ws: Workspace, run_id: str, device: str | torch.device = "cpu") -> tuple[Classifier, RunRecord]:
    """Rebuild a finished classifier run and load its weights, checked against its config."""
    from .weights import load_into
    rec = ws.get(run_id)
    if rec.kind not in CLASSIFIER_KINDS:
        raise ParamError(f"run {run_id} is a {rec.kind} run, not a classifier")
    if rec.status != "done":
        raise ParamError(f"run {run_id} is {rec.status}; only finished runs can be loaded")
    model = model_for_loading(classifier_config(rec))
    load_into(model, rec.file("weights.safetensors"), expect={"arch": rec.config["model"]["arch"]})
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    return prepare(model, dev).eval(), rec


def check_classifier_weights(ws: Workspace, run_id: str) -> None:
    """Load a finished classifier's weights once, on the CPU, so that an unloadable run is refused
    (DamagedRun naming it) before a new run or job that needs it is created."""
    from .runs import refused_as_damage
    rec = ws.get(run_id)
    with refused_as_damage(rec):
        load_classifier(ws, rec.id, "cpu")
