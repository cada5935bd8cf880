"""mivis as a Python library: attack, judge, analyse and compare a classifier you hold in memory.

Any `torch.nn.Module` that maps a batch of images (N, C, H, W) to logits (N, K) works, timm or not, together
with the data it was trained on (a data config: the same keys as the CLI's data flags, `mivis.data.DATA_PARAMS`).
Every function goes through the code the CLI runs, with the same parameters and the same refusals, and
every result is an ordinary run in a workspace (`runs list`, the app's pages and the CLI see it):

    from mivis import api

    data = {"dataset": "folder", "data_dir": "faces", "private_list": "faces/private.txt",
            "image_size": 64, "channels": 3}
    target = api.add_model(model, data, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                             class_order="sorted")                  # = python -m mivis import-model
    judge = api.train_model(data, role="eval", arch="vgg11")      # = python -m mivis train --role eval
    att = api.attack(target, "gmi", eval_run=judge, preset="classroom")   # = python -m mivis attack
    print(att.metrics["attack_acc_top1"])                             # value, 95% interval, identities
    api.compare(att, other_attack)                                  # = python -m mivis evaluate compare

How a module becomes a run (`add_model`): a timm model (it carries timm's `pretrained_cfg`) is imported exactly
as `import-model` imports its safetensors file, so its run can be used from any process. Any other module is
registered for this process as architecture `python:<ClassName>-<hash>`: its state dict is the run's weights
and its logits are the run's features (`embed`), since mivis cannot know a foreign module's penultimate layer
(LOMMA's feature term and feature distances of such a target then use logits). Its runs stay in the
workspace; another process refuses them by name until it passes the same module to `add_model` again.

Inputs: mivis images are in [-1, 1]; the module receives ((x + 1) / 2 - mean) / std, as `import-model
--norm-mean/--norm-std` (default for a non-timm module: mean = std = 0.5, i.e. the [-1, 1] images as they are).
Class order: output c means the split's private identity c ('split', the default; `python -m mivis data`
lists them), or 'sorted' (the names sorted: torchvision ImageFolder), or a list of names.
"""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import torch
from torch import nn

from .data import DATA_PARAMS, DataError, load_split
from .params import ParamError
from .progress import NULL, Reporter
from .runs import RunError, RunRecord, Workspace
from .weights import WeightsError

__all__ = ["add_model", "train_model", "attack", "judge", "analyse", "compare", "delta", "export_split",
           "classroom_setup", "load_model", "ParamError", "DataError", "RunError", "WeightsError"]


def _ws(workspace) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def _id(run) -> str:
    return run.id if isinstance(run, RunRecord) else str(run)


class _LogitsBody(nn.Module):
    """A foreign module as a mivis body: its output (the logits) is the feature vector; the run's head is
    the identity, so the classifier's logits are exactly the module's."""

    def __init__(self, module: nn.Module, num_classes: int):
        super().__init__()
        self.inner, self.num_features = module, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def _python_arch(model: nn.Module, num_classes: int) -> str:
    """Register `model`'s class as an architecture of this process (a fresh copy per build); its name."""
    from .models import ARCHITECTURES, PYTHON_PREFIX
    shapes = ";".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    name = f"{PYTHON_PREFIX}{type(model).__name__}-{hashlib.sha256(shapes.encode()).hexdigest()[:10]}"
    if name not in ARCHITECTURES._entries:
        template = copy.deepcopy(model).cpu()

        def build(in_chans: int, img_size: int, **_) -> nn.Module:
            return _LogitsBody(copy.deepcopy(template), num_classes)
        ARCHITECTURES.register(name, build, help=f"{type(model).__name__} (a module given to mivis.api)",
                               family="python", any_timm=True, python=True)
    return name


def _timm_arch(model: nn.Module) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("architecture") if isinstance(cfg, dict) else None
    if not name or not hasattr(model, "get_classifier"):
        return None
    from .models import ARCHITECTURES
    return name if name in ARCHITECTURES else None


def add_model(model: nn.Module, data: dict | None = None, *, role: str = "target", mean=None, std=None,
              class_order: list[str] | str | None = None, name: str = "", workspace=None,
              keep_flagged: bool = False, reporter: Reporter = NULL) -> RunRecord:
    """Register an in-memory classifier as a finished target (or `role="eval"`: judge) run, through
    `import-model`'s checks and measurement: shapes, non-finite or absurd weights and negative BatchNorm
    variances refused before a run exists (WeightsError); held-out accuracy measured on the split; a model
    near chance is flagged "classes probably mis-ordered" and not registered (ImportFlagged, a ParamError,
    with the suggested order in `.metrics`) unless keep_flagged. `data`: the data config it was trained on."""
    from .importing import import_model
    from .weights import save_weights
    if not isinstance(model, nn.Module):
        raise ParamError(f"model: a torch.nn.Module mapping images to logits is needed, not {type(model).__name__}")
    ws = _ws(workspace)
    split = load_split(data)
    c, h, _ = split.image_shape
    k = split.num_classes
    state = {kk: v.detach().cpu() for kk, v in model.state_dict().items()}
    arch = _timm_arch(model)
    if arch is None:
        was = model.training
        try:
            with torch.no_grad():
                out = model.eval()(torch.zeros(2, c, h, h, device=next(model.parameters(), torch.zeros(0)).device))
        except Exception as e:  # the module cannot take this data's images
            raise ParamError(f"model: it cannot take {c}-channel {h} px images ({type(e).__name__}: "
                             f"{str(e)[:160]}); give the data it was trained on") from None
        finally:
            model.train(was)
        if out.dim() != 2 or out.shape[1] != k:
            raise ParamError(f"model: it returns {tuple(out.shape)} for 2 images; logits (N, {k}) are needed, one "
                             f"per private class of the data")
        arch = _python_arch(model, k)
        state = {f"body.inner.{kk}": v for kk, v in state.items()}
        state["head.weight"], state["head.bias"] = torch.eye(k), torch.zeros(k)
        if mean is None and std is None:
            mean, std = [0.5] * c, [0.5] * c
    folder = ws.path / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"api-{hashlib.sha256(repr(sorted((kk, tuple(v.shape)) for kk, v in state.items())).encode()).hexdigest()[:12]}.safetensors"
    try:
        save_weights(path, state, {"arch": arch, "source": "mivis.api.add_model"})
    except RuntimeError as e:  # e.g. tensors sharing memory in a way safetensors refuses
        raise WeightsError(f"model: its weights cannot be written as safetensors ({str(e)[:160]})") from None
    return import_model(path, arch, data, role=role, img_size=h, in_chans=c, mean=mean, std=std,
                        class_order=class_order, workspace=ws, reporter=reporter, keep_flagged=keep_flagged,
                        name=name or f"{role} {type(model).__name__} (mivis.api)")


def train_model(data: dict | None = None, *, role: str = "target", workspace=None, reporter: Reporter = NULL,
                name: str = "", **train) -> RunRecord:
    """`python -m mivis train`: train a classifier here (train keys: mivis.train.TRAIN_PARAMS, e.g.
    arch="vgg11", epochs=30, skips=[1, 1, 1, 0] through defenses). Returns the finished run."""
    from .train import train_run
    return train_run(role, train, data, workspace=_ws(workspace), reporter=reporter, name=name)


def attack(target, attack: str = "gmi", *, prior: str | None = None, eval_run=None, extra_judges=(),
           preset: str | None = None, params: dict | None = None, dlib: bool | None = None, workspace=None,
           reporter: Reporter = NULL, name: str = "") -> RunRecord:
    """`python -m mivis attack`: invert `target` (a run or its id) and judge the reconstructions. The prior is
    picked as the CLI picks it (a finished fitting prior run, else a shipped one, adapted and labelled when the
    target takes another size or channel count); `preset` and `params` are the attack's CLI parameters."""
    from .attacks import ATTACKS, attack_run
    from .attacks.context import check_target, pick_prior
    from .attacks.presets import apply_preset
    ws = _ws(workspace)
    tid = _id(target)
    need = ATTACKS.get(attack).meta["prior"]
    if prior is None and need != "none":
        prior = pick_prior(ws, check_target(ws, tid), need)
    elif prior is not None and not ws.exists(_id(prior)):
        from .priors import import_prior
        prior = import_prior(_id(prior), ws).id
    return attack_run(attack, tid, _id(prior) if prior is not None else None,
                      params=apply_preset(preset, attack, dict(params or {})),
                      eval_run=_id(eval_run) if eval_run is not None else None,
                      extra_judges=[_id(j) for j in extra_judges], dlib=dlib, workspace=ws, reporter=reporter,
                      name=name)


def judge(attack_run, eval_run=None, extra_judges=(), *, dlib: bool | None = None, workspace=None) -> RunRecord:
    """`python -m mivis evaluate rejudge`: judge an attack run's reconstructions again (another E, extra
    judges, dlib); the previous evaluation is kept beside the new one."""
    from .attacks.run import reevaluate
    ws = _ws(workspace)
    reevaluate(ws, _id(attack_run), _id(eval_run) if eval_run is not None else None,
               [_id(j) for j in extra_judges], dlib)
    return ws.get(_id(attack_run))


def analyse(target, attack_run=None, *, params: dict | None = None, workspace=None,
            reporter: Reporter = NULL) -> RunRecord:
    """`python -m mivis analyze layers`: Fisher information per layer (classification vs the attack's loss)
    and gradient flow; the result's layers.json is read with `run.read_json("layers.json")`."""
    from .analysis import layers_run
    return layers_run(_id(target), _id(attack_run) if attack_run is not None else None, params or {},
                      workspace=_ws(workspace), reporter=reporter)


def compare(run_a, run_b, *, by: str | None = None, metric: str = "attack_acc_top1", workspace=None) -> dict:
    """`python -m mivis evaluate compare`: the paired difference A - B over the same identities with its
    95% interval and verdict, both runs named with their targets' natural accuracy (`a_side`, `b_side`), and
    `warnings` (a target that did not learn, far-apart natural accuracies, imported vs trained here)."""
    from .evaluation import compare_runs
    from .evaluation.compare import JUDGE_METRIC
    if by is not None and by not in JUDGE_METRIC:
        raise ParamError(f"by: {by!r} is not one of {', '.join(JUDGE_METRIC)}")
    return compare_runs(_ws(workspace), _id(run_a), _id(run_b), JUDGE_METRIC[by] if by else metric)


def delta(defended_run, reference_run, *, by: str = "E", workspace=None) -> dict:
    """`python -m mivis evaluate delta`: AttAcc drop / Acc drop against an undefended reference, with warnings."""
    from .evaluation import delta as _delta
    from .evaluation.compare import JUDGE_METRIC
    if by not in JUDGE_METRIC:
        raise ParamError(f"by: {by!r} is not one of {', '.join(JUDGE_METRIC)}")
    return _delta(_ws(workspace), _id(defended_run), _id(reference_run), JUDGE_METRIC[by])


def export_split(data: dict | None, out: str | Path) -> dict[str, Path]:
    """`python -m mivis data --export DIR`: the split's file lists (train outside mivis without the held-out
    images) and classes.txt, the class order mivis expects."""
    from .data._export import export_split as _export
    DATA_PARAMS.validate(data, context="data")
    return _export(load_split(data), out)


def classroom_setup(workspace=None) -> dict[str, str]:
    """`python -m mivis classroom setup`: register the shipped ORL target, judge (VGG-11, 32 px gray) and 32 px
    prior; returns their run ids {"target", "eval", "prior"}. The judge also judges targets of the same ORL
    split at another size or channel count (e.g. 64 px RGB), adapted and labelled."""
    from .classroom import import_classroom
    from .priors import import_prior, shipped_priors
    ws = _ws(workspace)
    ids = import_classroom(ws)
    return {**ids, "prior": import_prior(next(n for n in shipped_priors() if "32" in n), ws).id}


def load_model(run, device: str = "cpu", workspace=None) -> nn.Module:
    """A classifier run as a module taking mivis's [-1, 1] images (e.g. to check what add_model stored)."""
    from .train import load_classifier
    return load_classifier(_ws(workspace), _id(run), device)[0]
