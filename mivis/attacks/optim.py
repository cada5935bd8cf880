"""Per-element optimisers for latents (momentum SGD, Adam) as plain tensor updates.

Written out (not torch.optim) so a step stays a handful of fused-friendly tensor ops; the math is
torch.optim's: SGD buf = m*buf + g, p -= lr*buf; Adam with bias correction.
"""
from __future__ import annotations

import torch


class LatentOptimizer:
    def __init__(self, spec: dict, params: list[torch.Tensor]):
        self.kind, self.lr = spec["kind"], spec["lr"]
        self.params = params
        self.t = 0
        if self.kind == "sgd":
            self.m = spec.get("momentum", 0.0)
            self.buf = [torch.zeros_like(p) for p in params]
        elif self.kind == "adam":
            self.b1, self.b2 = spec.get("betas", (0.9, 0.999))
            self.eps = spec.get("eps", 1e-8)
            self.m1 = [torch.zeros_like(p) for p in params]
            self.m2 = [torch.zeros_like(p) for p in params]
        else:
            raise ValueError(f"optimizer kind {self.kind!r}")

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        self.t += 1
        if self.kind == "sgd":
            for p, g, b in zip(self.params, grads, self.buf):
                b.mul_(self.m).add_(g)
                p.sub_(self.lr * b)
            return
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        for p, g, m1, m2 in zip(self.params, grads, self.m1, self.m2):
            m1.lerp_(g, 1 - self.b1)
            m2.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            denom = (m2 / c2).sqrt_().add_(self.eps)
            p.addcdiv_(m1, denom, value=-self.lr / c1)
