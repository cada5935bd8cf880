"""Defenses against model inversion: skip surgery (RoLSS/SSF/TTS), TL-DMI, CALoR, baselines.

Import order is registry order, which is the order hooks run: structure first (skips, then TTS),
freezing, then the losses, and head replacements last so they see the final feature width.
"""
from .base import DEFENSES, Defense, instantiate
from . import skips, tts, tldmi, negls, bido, mid, calor  # noqa: E402,F401  (registration)
from ..models import use_defenses

use_defenses(instantiate)  # model_from_config applies the structural defenses through it

__all__ = ["DEFENSES", "Defense", "instantiate"]
