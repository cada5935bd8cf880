"""Defenses against model inversion: skip surgery (RoLSS/SSF/TTS), TL-DMI, CALoR, baselines."""
from .base import DEFENSES, Defense, instantiate

__all__ = ["DEFENSES", "Defense", "instantiate"]
