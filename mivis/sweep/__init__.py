"""Sweeps: grids of (architecture, defense, attack, seed) run end to end with reuse and resume."""
from . import estimate as _estimate_module  # noqa: F401  first: importing the submodule later (runner.estimate
# does) would rebind `mivis.sweep.estimate` from the function below to the module ('module' object is not callable)
from .grid import defense_label, expand, load_grid
from .runner import estimate, load_summary, plan_sweep, run_sweep

__all__ = ["defense_label", "estimate", "expand", "load_grid", "load_summary", "plan_sweep", "run_sweep"]
