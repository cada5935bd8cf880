"""Bootstrap confidence intervals over identities (resample identities, keep their samples together).

All functions take per-sample values and the identity (group) of each sample. Percentile
intervals; `resolved` means the interval of a difference excludes 0.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

LEVEL = 0.95
# An interval describes verdicts, not the run that produced them: every stored evaluation resamples with
# this one seed, so identical verdicts get identical intervals whatever the attack's or projection's seed.
BOOTSTRAP_SEED = 0


def _group_index(groups) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(groups)
    uniq, inv = np.unique(g, return_inverse=True)
    return uniq, inv


def _resamples(n_groups: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))


def _ci(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(samples, [a, 1 - a])
    return float(lo), float(hi)


def metric(value: float, lo: float, hi: float, n: int) -> dict:
    """The project's metric record: {"value", "lo", "hi", "n"} (n = identities resampled)."""
    f = lambda v: None if v is None or not np.isfinite(v) else float(v)
    return {"value": f(value), "lo": f(lo), "hi": f(hi), "n": int(n)}


def bootstrap_mean(values, groups, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean over samples with a 95% CI from resampling groups (identities) with replacement."""
    v = np.asarray(values, dtype=np.float64)
    uniq, inv = _group_index(groups)
    sums = np.bincount(inv, weights=v, minlength=len(uniq))
    counts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    idx = _resamples(len(uniq), n_boot, seed)
    boot = sums[idx].sum(1) / counts[idx].sum(1)
    return metric(v.mean() if v.size else np.nan, *_ci(boot), len(uniq))


def bootstrap_stat(stat: Callable[[np.ndarray], float], groups, n_boot: int = 500, seed: int = 0) -> dict:
    """Any statistic of a set of groups: stat(group_ids_array) -> float, resampled over groups."""
    uniq, _ = _group_index(groups)
    value = stat(uniq)
    boot = np.array([stat(uniq[row]) for row in _resamples(len(uniq), n_boot, seed)])
    return metric(value, *_ci(boot), len(uniq))


def paired_difference(a_values, a_groups, b_values, b_groups, n_boot: int = 2000, seed: int = 0) -> dict:
    """mean(a) - mean(b) over the same identities; both resampled with the same identity draws.

    Returns the metric record plus "resolved": the 95% interval excludes 0.
    """
    ua, ia = _group_index(a_groups)
    ub, ib = _group_index(b_groups)
    if len(ua) != len(ub) or not np.array_equal(ua, ub):
        raise ValueError("a paired difference needs the same identities in both runs")
    a, b = np.asarray(a_values, np.float64), np.asarray(b_values, np.float64)
    sa, ca = np.bincount(ia, weights=a, minlength=len(ua)), np.bincount(ia, minlength=len(ua)).astype(float)
    sb, cb = np.bincount(ib, weights=b, minlength=len(ub)), np.bincount(ib, minlength=len(ub)).astype(float)
    idx = _resamples(len(ua), n_boot, seed)
    boot = sa[idx].sum(1) / ca[idx].sum(1) - sb[idx].sum(1) / cb[idx].sum(1)
    out = metric(a.mean() - b.mean(), *_ci(boot), len(ua))
    out["resolved"] = bool(out["lo"] is not None and (out["lo"] > 0 or out["hi"] < 0))
    return out


def ratio_difference(a_values, a_groups, b_values, b_groups, denominator: float, paired: bool,
                     n_boot: int = 2000, seed: int = 0) -> dict:
    """(mean(b) - mean(a)) / denominator with a CI (paired when identities match, else independent)."""
    ua, ia = _group_index(a_groups)
    ub, ib = _group_index(b_groups)
    a, b = np.asarray(a_values, np.float64), np.asarray(b_values, np.float64)
    sa, ca = np.bincount(ia, weights=a), np.bincount(ia).astype(float)
    sb, cb = np.bincount(ib, weights=b), np.bincount(ib).astype(float)
    ra = _resamples(len(ua), n_boot, seed)
    rb = ra if paired else _resamples(len(ub), n_boot, seed + 1)
    boot = (sb[rb].sum(1) / cb[rb].sum(1) - sa[ra].sum(1) / ca[ra].sum(1)) / denominator
    return metric((b.mean() - a.mean()) / denominator, *_ci(boot), len(ua))


def jackknife_stat(stat: Callable[[np.ndarray], float], groups, level: float = LEVEL) -> dict:
    """Leave-one-identity-out jackknife interval (normal approximation) for statistics the bootstrap
    biases, such as the Frechet distance: resampled identity sets repeat identities, which inflates
    covariance noise, so a percentile interval can miss the estimate itself."""
    from statistics import NormalDist
    uniq, _ = _group_index(groups)
    value = stat(uniq)
    n = len(uniq)
    if n < 3:
        return metric(value, np.nan, np.nan, n)
    loo = np.array([stat(np.delete(uniq, i)) for i in range(n)])
    se = np.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum())
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return metric(value, value - z * se, value + z * se, n)
