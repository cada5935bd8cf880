"""TL-DMI: fine-tune a publicly pre-trained model on private data with the first k layer groups
frozen, so only the last |theta_C| parameters see private data.

As in TL-DMI's code and the MI toolbox (method version 2): frozen layers only get
requires_grad=False, so their BatchNorm running statistics keep updating on the private data while
the model trains. bn_stats 'frozen-nonpaper' (mivis before version 2) also holds the frozen
BatchNorms in eval mode (running statistics fixed at the public pre-training's)."""
from __future__ import annotations

from torch import nn

from ..params import Param, ParamError, ParamSet
from ..surgery import layer_groups, stages
from .base import DEFENSES, Defense

BN_STATS = ("update", "frozen-nonpaper")

PARAMS = ParamSet([
    Param("freeze", int, None, "layer groups frozen from the input (conv+BN = one group); unset = everything "
          "before the last stage (ResNet-18: layer4 and the head train). TL-DMI's code indexes VGG16's "
          "features.children(), where each ReLU and pooling module also counts: mivis's freeze 8 = the paper's "
          "freeze 26 (conv1-8 frozen, 2.92M parameters; the same trainable count)", min=0, max=100000,
          optional=True),
    Param("bn_stats", str, "update", "BatchNorm running statistics of the frozen layers: 'update' = TL-DMI's "
          "code (requires_grad=False only: they keep adapting to the private data), 'frozen-nonpaper' = held "
          "at the pre-training's (mivis before method version 2; not the paper's)", choices=BN_STATS),
])


def default_depth(model: nn.Module) -> int:
    """Groups before the last stage's first parameter."""
    first = "body." + stages(model)[-1].blocks[0][0] + "."
    groups = layer_groups(model)
    return next(g["index"] for g in groups if any(p.startswith(first) for p in g["params"]))


def freeze_report(model: nn.Module) -> list[dict]:
    """For every allowed depth k: |theta_C| (trainable parameters) and its fraction of |theta_T|."""
    groups = layer_groups(model)
    total = sum(g["n_params"] for g in groups)
    rows, trainable = [], total
    for k in range(len(groups)):
        rows.append({"k": k, "frozen_through": groups[k - 1]["name"] if k else None,
                     "first_trained": groups[k]["name"], "trainable": trainable, "total": total,
                     "fraction": trainable / total})
        trainable -= groups[k]["n_params"]
    return rows


@DEFENSES.register("tldmi", params=PARAMS, paper="TL-DMI (Ho et al., CVPR 2024)",
                   help="fine-tune a public pre-trained run with the first k layer groups frozen "
                        "(needs --init-run: train one with --role public first)",
                   cli_aliases={"freeze": "--freeze"})
class TransferFreeze(Defense):
    _frozen: set[str] | None = None

    def depth(self, model: nn.Module) -> int:
        return default_depth(model) if self.p["freeze"] is None else self.p["freeze"]

    def check_training(self, train_cfg: dict, model: nn.Module) -> None:
        if not (train_cfg.get("init_run") or train_cfg.get("init_weights")):
            raise ParamError("tldmi: fine-tuning needs a pre-trained start; set init_run to a finished public "
                             "run of the same architecture (train one with --role public), or init_weights "
                             "to a local pretrained checkpoint")
        n = len(layer_groups(model))
        if self.depth(model) > n - 1:
            raise ParamError(f"tldmi freeze: {self.depth(model)} is beyond this model's {n} layer groups; "
                             f"allowed: 0 to {n - 1} ({n - 1} = only the last group trains)")
        self.p["freeze"] = self.depth(model)  # recorded resolved

    def _frozen_names(self, model: nn.Module) -> set[str]:
        # fixed at the first call, so a later structural switch (TTS) cannot shift the boundary
        if self._frozen is None:
            self._frozen = {p for g in layer_groups(model)[:self.depth(model)] for p in g["params"]}
        return self._frozen

    def trainable_names(self, model: nn.Module) -> set[str]:
        frozen = self._frozen_names(model)
        return {n for n, _ in model.named_parameters() if n not in frozen}

    def frozen_modules(self, model: nn.Module) -> list[nn.Module]:
        if not self.legacy and self.p["bn_stats"] == "update":
            return []  # TL-DMI: frozen BatchNorms still update their running statistics
        frozen = self._frozen_names(model)
        return [m for name, m in model.named_modules()
                if any(f"{name}.{p}" in frozen for p, _ in m.named_parameters(recurse=False))]
