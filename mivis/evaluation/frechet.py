"""Feature Frechet distance: the Frechet distance between Gaussians fitted to two feature sets.

Computed in the evaluation model's penultimate feature space (so it is NOT the Inception "FID").
tr sqrt(S1 S2) is evaluated in whichever space is smaller: with A = centred X1 / sqrt(n1 - 1) and
B likewise, it is the nuclear norm of A B^T (n1 x n2); otherwise from d x d eigen-decompositions.
"""
from __future__ import annotations

import numpy as np
import torch


def frechet_distance(f1: torch.Tensor | np.ndarray, f2: torch.Tensor | np.ndarray) -> float:
    a = torch.as_tensor(np.asarray(f1), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(f2), dtype=torch.float64)
    if a.shape[0] < 2 or b.shape[0] < 2:
        return float("nan")
    mu1, mu2 = a.mean(0), b.mean(0)
    A = (a - mu1) / (a.shape[0] - 1) ** 0.5
    B = (b - mu2) / (b.shape[0] - 1) ** 0.5
    tr1, tr2 = (A * A).sum(), (B * B).sum()
    d = a.shape[1]
    if min(a.shape[0], b.shape[0]) <= d:
        cross = torch.linalg.svdvals(A @ B.T).sum()
    else:
        s1 = A.T @ A
        w, v = torch.linalg.eigh(s1)
        root = (v * w.clamp_min(0).sqrt()) @ v.T
        m = root @ (B.T @ B) @ root
        cross = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + tr1 + tr2 - 2 * cross)
