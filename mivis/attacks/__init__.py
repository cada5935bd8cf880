"""Model-inversion attacks: white-box, GMI, KEDMI, LOMMA, PLG-MI, PPA-style, IF-GMI, posterior mean.

`invert(attack, target_run, prior_run, identities, restarts, params, reporter=..., on_step=...)`
is the single entry point; `attack_run(...)` wraps it in a registry run with evaluation.
`identity_loss(name, logits, y)` and each attack's `.identity_loss` are reusable.
"""
from . import gmi, ifgmi, kedmi, lomma, plgmi, posterior, ppa, whitebox  # noqa: F401  (register the attacks)
from .base import ATTACKS, COMMON_PARAMS, Attack, Forward
from .engine import StepEvent, Trace
from .invert import InversionResult, estimate_seconds, invert, plan_attack
from .losses import IDENTITY_LOSSES, identity_loss
from .run import attack_run

__all__ = ["ATTACKS", "COMMON_PARAMS", "Attack", "Forward", "StepEvent", "Trace", "InversionResult",
           "attack_run", "estimate_seconds", "invert", "plan_attack", "IDENTITY_LOSSES", "identity_loss"]
