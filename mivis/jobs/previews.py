"""Live previews of a running job (an attack's current images, written to the job folder)."""
from __future__ import annotations

import json
import time

from .kinds import JobContext


class _Preview:
    """An attack's step hook: about once a second, the current image of every attacked identity
    (its first latent) goes to the job folder as preview.png (+ preview.json), for the live view. For the
    posterior mean ("sampling") the image is the average of what the identity keeps after that round."""

    def __init__(self, ctx: JobContext, every: float = 1.0, max_identities: int = 1000):  # the live view pages them
        self.ctx, self.every, self.max_ids = ctx, every, max_identities
        self.last = 0.0

    def __call__(self, ev) -> None:
        now = time.monotonic()
        last_step = ev.iteration == ev.iterations - 1
        if now - self.last < self.every and not last_step:
            return
        self.last = now
        import torch

        from ..grid import grid_png
        y = ev.y.detach().cpu()
        first: dict[int, int] = {}
        for i, c in enumerate(y.tolist()):
            first.setdefault(c, i)
        ids = sorted(first)[:self.max_ids]
        x = ev.x.detach().float().cpu()[torch.tensor([first[c] for c in ids])]
        scale = 2 if x.shape[-1] <= 32 else 1
        self.ctx.write_bytes("preview.png", grid_png(x, min(10, len(ids)), scale=scale))
        self.ctx.write_bytes("preview.json", json.dumps({"iteration": ev.iteration + 1, "iterations": ev.iterations,
                                                         "identities": ids,
                                                         "sampling": ev.attack.gradient_free}).encode())
