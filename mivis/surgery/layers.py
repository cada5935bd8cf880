"""Ordered layer groups (input to output): the unit TL-DMI freezes and Fisher information uses.

A group is one parameterised layer (a conv, linear, embedding...) together with a normalisation
layer that directly follows it (conv + BN count as one layer, as in the papers' "conv1-8").
Other parameterised modules (a pre-norm LayerNorm, ViT's class/position tokens) are their own
groups. Order is module registration order, which timm keeps input-to-output.
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _NormBase

_NORMS = (_NormBase, nn.LayerNorm, nn.GroupNorm)


def layer_groups(model: nn.Module) -> list[dict]:
    """[{index, name, modules, params (parameter names), n_params}] in input-to-output order."""
    groups: list[dict] = []
    open_weighted = False  # the last group ends with a conv/linear a norm may still join
    for name, m in model.named_modules():
        own = [f"{name}.{p}" if name else p for p, _ in m.named_parameters(recurse=False)]
        if not own:
            continue
        n = sum(p.numel() for _, p in m.named_parameters(recurse=False))
        if isinstance(m, _NORMS) and open_weighted:
            g = groups[-1]
            g["modules"].append(name)
            g["params"] += own
            g["n_params"] += n
            open_weighted = False
            continue
        groups.append({"index": len(groups), "modules": [name or "(root)"], "params": own, "n_params": n})
        open_weighted = not isinstance(m, _NORMS)
    for g in groups:
        g["name"] = "+".join(g["modules"])
    return groups
