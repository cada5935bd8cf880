"""Sweeps: grids of (architecture, defense, attack, seed) run end to end with reuse and resume."""
from .grid import defense_label, expand, load_grid
from .runner import estimate, load_summary, plan_sweep, run_sweep

__all__ = ["defense_label", "estimate", "expand", "load_grid", "load_summary", "plan_sweep", "run_sweep"]
