"""Checks over runs of any kind, by the layer that loads that kind: a classifier's weights by train, a
prior's by priors. It stands above both (weights.py stays about files; the registry knows neither)."""
from __future__ import annotations

from .priors.store import check_prior_weights
from .runs import Workspace
from .train import CLASSIFIER_KINDS, check_classifier_weights


def check_run_weights(ws: Workspace, run_id: str) -> None:
    """Load a finished classifier's or prior's weights once, on the CPU, so that an unloadable run
    is refused (DamagedRun naming it) before a new run or job that needs it is created. Other kinds
    (attacks, analyses) have no weights to check."""
    rec = ws.get(run_id)
    if rec.kind == "prior":
        check_prior_weights(ws, rec.id)
    elif rec.kind in CLASSIFIER_KINDS:
        check_classifier_weights(ws, rec.id)
