"""Evaluation of attacks: judges, per-reconstruction metrics, identity-bootstrap intervals, comparisons.

evaluate(...)            metrics + histogram data + per-reconstruction rows for one attack's output
compare_runs(ws, a, b)   paired difference of a metric between two attack runs, with 'resolved'
delta(ws, def, ref)      AttAcc drop / Acc drop against an undefended reference attack run
bootstrap_mean / paired_difference / frechet_distance: the building blocks
"""
from .bootstrap import bootstrap_mean, bootstrap_stat, paired_difference
from .compare import compare_runs, delta, load_evaluation
from .frechet import frechet_distance
from .judges import Judge, check_judge, histeq, load_judge, pick_eval_run
from .metrics import evaluate, histogram, judge_reconstructions

__all__ = ["bootstrap_mean", "bootstrap_stat", "paired_difference", "compare_runs", "delta", "load_evaluation",
           "frechet_distance", "Judge", "check_judge", "histeq", "load_judge", "pick_eval_run", "evaluate",
           "histogram", "judge_reconstructions"]
