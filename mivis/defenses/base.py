"""The defense interface: hooks the trainer calls. Each concrete defense overrides a few.

A defense is registered in `DEFENSES` with its parameters; `instantiate` validates a config
{name: params} and returns Defense objects in registry order, refusing impossible settings
before any training starts.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..params import ParamError, ParamSet
from ..registry import Registry

DEFENSES = Registry("defense")

# Method version of the defenses' training and test-time behaviour, recorded in a new run's model config
# ("defense_version"). 2: MID's KL in nats and z sampled at test time, TL-DMI's frozen BatchNorms keep
# updating their running statistics, negative label smoothing on PPA's schedule. A stored run without the
# key was trained by version 1 and is rebuilt as such (Defense.legacy). 3: negative label smoothing on PPA's
# code's schedule (ls_scheduler: half the factor at three quarters of the epochs, then the factor); the RoLSS
# `released` preset on ViT/DeiT scales only the MLP residual of the first block (the code's configs' mode mlp).
METHOD_VERSION = 3
CHANGED_IN = {"mid": 2, "tldmi": 2, "negls": 3}  # the last version that changed each defense's behaviour


def defenses_version(defenses: dict, arch: str | None = None) -> int:
    """The method version a training with these defenses (on this architecture) depends on (1 when none of
    them changed)."""
    v = max([CHANGED_IN.get(n, 1) for n in defenses or {}] or [1])
    sk = (defenses or {}).get("skips")
    if arch and isinstance(sk, dict) and sk.get("preset") == "released" and sk.get("scales") is None \
            and sk.get("block_scales") is None and sk.get("mode", "both") == "both":
        try:
            if family({"arch": arch}) == "vit":
                v = max(v, 3)  # released ViT/DeiT: mode mlp since version 3
        except ParamError:
            pass  # an unknown architecture is refused when the step is validated
    return v


class Defense:
    name: str = ""
    params: ParamSet = ParamSet()

    def __init__(self, params: dict, model_cfg: dict):
        self.p = params
        self.model_cfg = model_cfg
        # a model config without defense_version: a run stored by method version 1 (or a preview)
        self.legacy = int(model_cfg.get("defense_version", 1)) < 2

    # --- validation (before any compute) ---
    def check(self) -> None:
        """Raise ParamError if this setting is impossible for model_cfg."""

    def check_training(self, train_cfg: dict, model: nn.Module) -> None:
        """Raise ParamError if this setting is impossible with these training settings or this
        built model (e.g. a freeze depth beyond its layers). Called before any run exists."""

    # --- structure ---
    def modify_model(self, model: nn.Module, phase: str) -> nn.Module:
        """phase 'initial': the model training starts with; 'final': the model as saved."""
        return model

    def trainable_names(self, model: nn.Module) -> set[str] | None:
        """Names of parameters that train (None = all). Others are frozen, BN stats included."""
        return None

    def frozen_modules(self, model: nn.Module) -> list[nn.Module]:
        """Modules to keep in eval mode during training (frozen BatchNorm statistics)."""
        return []

    # --- training ---
    def on_epoch_start(self, epoch: int, model: nn.Module, trainer: Any) -> nn.Module:
        """Return the model to train this epoch. A new model, or one whose parameters were edited
        in place (TTS), makes the trainer re-place it and rebuild the optimiser (state kept)."""
        return model

    def task_loss(self, logits: torch.Tensor, y: torch.Tensor, *, epoch: int, trainer: Any) -> torch.Tensor | None:
        """Replace cross-entropy as the base loss (label smoothing, CALoR's adaptation); None keeps it.
        If several defenses replace it in the same epoch, the later one in registry order wins."""
        return None

    def loss(self, loss: torch.Tensor, *, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             logits: torch.Tensor, epoch: int, trainer: Any) -> torch.Tensor:
        """Transform the (mean) training loss; default returns it unchanged."""
        return loss

    def extra_epochs(self) -> int:
        """Epochs this defense appends after the main schedule (e.g. CALoR's adaptation)."""
        return 0

    def describe(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.p.items())})"


def family(model_cfg: dict) -> str:
    from ..models import ARCHITECTURES
    return ARCHITECTURES.get(model_cfg["arch"]).meta["family"]


def archs_of(families) -> str:
    """Registered architecture names of these families, for refusal messages."""
    from ..models import ARCHITECTURES
    return ", ".join(n for n in ARCHITECTURES.names() if ARCHITECTURES.get(n).meta["family"] in families)


def skeleton(model_cfg: dict) -> nn.Module:
    """The plain architecture built on the meta device: its structure, no memory, no RNG use."""
    from ..models import build_classifier
    with torch.device("meta"):
        return build_classifier(model_cfg["arch"], model_cfg["num_classes"], model_cfg["in_chans"],
                                model_cfg["img_size"], model_cfg.get("arch_params"))


def instantiate(cfg: dict, model_cfg: dict) -> list[Defense]:
    unknown = [n for n in cfg if n not in DEFENSES]
    if unknown:
        raise ParamError(f"unknown defense(s) {', '.join(unknown)}; choose from: {', '.join(DEFENSES.names())}")
    out = []
    for name in DEFENSES.names():
        if name in cfg:
            entry = DEFENSES.get(name)
            d = entry.obj(entry.params.validate(cfg[name], context=f"defense {name}"), model_cfg)
            d.name = name
            d.check()
            out.append(d)
    return out
