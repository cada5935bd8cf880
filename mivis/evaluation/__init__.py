"""Evaluation of attacks: judges, per-reconstruction metrics, identity-bootstrap intervals, comparisons.

evaluate(...)            metrics + histogram data + per-reconstruction rows for one attack's output
compare_runs(ws, a, b)   paired difference of a metric between two attack runs, with 'resolved'
delta(ws, def, ref)      AttAcc drop / Acc drop against an undefended reference attack run
bootstrap_mean / paired_difference / frechet_distance: the building blocks
"""
from .bootstrap import bootstrap_mean, bootstrap_stat, paired_difference
from .compare import compare_runs, delta, load_evaluation

# the names that need torch load on first use, so the numpy-only parts (bootstrap, compare, agreement: the
# class's votes on Home, mivis/votes.py) import without torch
_LAZY = {"frechet_distance": "frechet", "Judge": "judges", "check_judge": "judges", "histeq": "judges",
         "load_judge": "judges", "pick_eval_run": "judges", "evaluate": "metrics", "histogram": "metrics",
         "judge_reconstructions": "metrics"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["bootstrap_mean", "bootstrap_stat", "paired_difference", "compare_runs", "delta", "load_evaluation",
           "frechet_distance", "Judge", "check_judge", "histeq", "load_judge", "pick_eval_run", "evaluate",
           "histogram", "judge_reconstructions"]
