"""Reconstructions at a few attack iterations, kept while the attack runs.

The layers analysis (MI Fisher information and gradient flow over attack iterations) needs the
inverted images at several iterations. Replaying the whole attack for that took 4.5 min on a CPU;
an attack run therefore stores them as it goes: at SNAPSHOTS log-spaced iterations, the first
reconstructions of its first chunk (the same latents every time), float16 like its final
reconstructions, capped in size so large images stay small on disk.
"""
from __future__ import annotations

import math

import torch

SNAPSHOTS = 12            # iterations kept (log-spaced, first and last included)
MAX_SAMPLES = 100         # reconstructions kept per iteration
MAX_VALUES = 8_000_000    # float16 values kept in all (16 MB): fewer samples for large images
MIN_SAMPLES = 8


def snapshot_iterations(iterations: int, n: int) -> list[int]:
    """n log-spaced iterations in [0, iterations-1], first and last included."""
    if n <= 0 or iterations <= 0:
        return []
    if n == 1:
        return [iterations - 1]
    pts = {int(round(math.expm1(k / (n - 1) * math.log1p(iterations - 1)))) for k in range(n)}
    return sorted(min(iterations - 1, p) for p in pts)


def samples_for(image_shape: tuple[int, ...], n_iterations: int) -> int:
    per = max(1, math.prod(image_shape)) * max(1, n_iterations)
    return max(MIN_SAMPLES, min(MAX_SAMPLES, MAX_VALUES // per))


class SnapshotRecorder:
    """An engine step hook that keeps snapshots, then calls the caller's own hook every `inner_every` steps."""

    def __init__(self, iterations: int, inner=None, inner_every: int = 1):
        self.wanted = set(snapshot_iterations(iterations, SNAPSHOTS))
        self.inner, self.inner_every = inner, max(1, inner_every)
        self.x: list[torch.Tensor] = []
        self.grad_norm: list[torch.Tensor] = []
        self.iteration: list[int] = []
        self.y: torch.Tensor | None = None
        self.n: int | None = None

    def __call__(self, ev) -> None:
        if self.inner is not None and ev.iteration % self.inner_every == 0:
            self.inner(ev)
        if ev.iteration not in self.wanted or int(ev.index[0]) != 0:  # first chunk only
            return
        if self.n is None:
            self.n = min(len(ev.y), samples_for(tuple(ev.x.shape[1:]), len(self.wanted)))
            self.y = ev.y[:self.n].detach().cpu()
        self.x.append(ev.x[:self.n].detach().float().cpu().half())
        self.grad_norm.append(ev.grad_norm[:self.n].detach().float().cpu())
        self.iteration.append(ev.iteration + 1)

    def tensors(self) -> dict[str, torch.Tensor] | None:
        """{images: (S, n, C, H, W) float16, labels: (n,), iteration: (S,) 1-based, latent_grad_norm: (S, n)}."""
        if not self.x:
            return None
        return {"images": torch.stack(self.x), "labels": self.y, "iteration": torch.tensor(self.iteration),
                "latent_grad_norm": torch.stack(self.grad_norm)}
