"""Per-element optimisers for latents as plain tensor updates (not torch.optim).

Written out so a step stays a handful of fused-friendly tensor ops. Kinds:
  nesterov  the GMI code's update (also LOMMA's and TL-DMI's GMI): v_prev = v; v = m*v - lr*g;
            p += -m*v_prev + (1+m)*v
  sgd       torch.optim's momentum SGD: buf = m*buf + g; p -= lr*buf (mivis before method version 2)
  adam      torch.optim's Adam with bias correction

`grad_scale` multiplies every gradient before the update. The engine differentiates the SUM of the
per-latent losses (so chunking cannot change a latent's step); the papers' code differentiates the
MEAN over its batch of B latents, i.e. each latent's gradient is 1/B of its own loss's gradient.
grad_scale = 1/B reproduces that step exactly at the paper's batch size, whatever batch mivis uses.
"""
from __future__ import annotations

import torch

KINDS = ("nesterov", "sgd", "adam")


class LatentOptimizer:
    def __init__(self, spec: dict, params: list[torch.Tensor]):
        self.kind, self.lr = spec["kind"], spec["lr"]
        self.grad_scale = float(spec.get("grad_scale", 1.0))
        self.params = params
        self.t = 0
        if self.kind in ("sgd", "nesterov"):
            self.m = spec.get("momentum", 0.0)
            self.buf = [torch.zeros_like(p) for p in params]
        elif self.kind == "adam":
            self.b1, self.b2 = spec.get("betas", (0.9, 0.999))
            self.eps = spec.get("eps", 1e-8)
            self.m1 = [torch.zeros_like(p) for p in params]
            self.m2 = [torch.zeros_like(p) for p in params]
        else:
            raise ValueError(f"optimizer kind {self.kind!r}; one of {', '.join(KINDS)}")

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        self.t += 1
        if self.grad_scale != 1.0:
            grads = [g * self.grad_scale for g in grads]
        if self.kind == "nesterov":
            for p, g, v in zip(self.params, grads, self.buf):
                # p += -m*v_prev + (1+m)*v_new with v_new = m*v_prev - lr*g
                #    = m*m*v_prev - (1+m)*lr*g   (one fused form, no copy of v_prev)
                p.add_(v, alpha=self.m * self.m).add_(g, alpha=-(1 + self.m) * self.lr)
                v.mul_(self.m).add_(g, alpha=-self.lr)
            return
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
