"""Named parameter sets for attacks. A preset fills parameters the caller did not give.

classroom: sized for a laptop CPU: all private identities of the ORL default (32 px) x 5 restarts; from
           the CLI 33-37 s end to end on a quiet 2-core AMD EPYC VM (README, Speed). Not the papers' 1500
           iterations: 100. With the paper's GMI step (method
           version 2) the shipped ORL target gave 56% top-1 over all restarts, 70% best restart per
           identity at 100 iterations (the old summed step: 62% / 75%); the work per iteration is the same.
           The posterior mean (pmean) draws samples instead of steps: one restart of 10 rounds x 2000 prior
           samples (README, "The posterior mean").
paper:     the papers' protocol sizes (5 restarts, the attack's own iteration count).
gpu:       paper sizes plus torch.compile with CUDA graphs.
"""
from __future__ import annotations

from ..params import ParamError

# the attack the Attack page launches in one click (with the classroom preset): the strongest measured
# (README "How much do the independent judges see?"); the first-attack benchmarks time the same
ONE_CLICK = "ifgmi"

PRESETS = {
    "classroom": {"restarts": 5, "iterations": 100, "_ppa": {"pool": 50, "candidates": 5},
                  "_ifgmi": {"iterations": 80}, "_pmean": {"restarts": 1, "iterations": 10}},
    "paper": {"restarts": 5},
    "gpu": {"restarts": 5, "compile": "reduce-overhead"},
}


def apply_preset(name: str | None, attack: str, params: dict) -> dict:
    if not name:
        return dict(params)
    if name not in PRESETS:
        raise ParamError(f"preset: {name!r} is not one of {', '.join(PRESETS)}")
    base = {k: v for k, v in PRESETS[name].items() if not k.startswith("_")}
    base.update(PRESETS[name].get(f"_{attack}", {}))
    return {**base, **params}
