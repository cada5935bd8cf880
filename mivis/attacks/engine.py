"""The batched optimisation loop every attack runs in.

All identities x restarts are optimised together; when they do not fit one batch they are split
into chunks of whole identities (every latent's update is independent of the others, so chunking
does not change the result; per-step randomness is seeded per chunk). A CUDA out-of-memory error
halves the chunk and redoes it. The trace (means over latents, per iteration) is kept on the
device and read back once per chunk, so the loop does not synchronise every step.

Hook: `on_step(event: StepEvent)` is called every `hook_every` iterations with detached tensors
of the current chunk (latents, images, target logits, per-sample losses and latent gradient
norms) and the attack itself (`event.attack.identity_loss(logits, y)` is the identity loss).
With compile="reduce-overhead" (CUDA graphs) these tensors are reused by the next step: clone what
you keep beyond the callback. A gradient-free attack (the posterior mean) calls it after its rounds: x is
each latent's reconstruction so far, logits the target's on x, loss and id_loss the kept samples' mean
cross-entropy, no latents and a zero gradient norm.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..device import autocast
from ..progress import NULL, Reporter
from .base import Attack, Forward, latent_seed
from .losses import target_likelihood
from .optim import LatentOptimizer

TRACE_FIELDS = ("loss", "id_loss", "p_target", "target_acc", "grad_norm")


@dataclass
class StepEvent:
    iteration: int               # 0-based, within the chunk's optimisation
    iterations: int
    index: torch.Tensor          # positions of the chunk's latents among all latents of the run (CPU)
    y: torch.Tensor              # attacked classes (device)
    latents: dict                # detached latents after this step's forward (before the update)
    x: torch.Tensor              # images of this step (detached)
    logits: torch.Tensor         # target logits used by the loss (detached)
    loss: torch.Tensor           # per-sample total loss
    id_loss: torch.Tensor        # per-sample identity loss
    grad_norm: torch.Tensor      # per-sample L2 norm of the gradient at the latents
    attack: Attack


@dataclass
class Trace:
    iteration: list[int]
    means: dict[str, list[float]]             # TRACE_FIELDS -> per-iteration mean over all latents
    checkpoints: list[int] = field(default_factory=list)
    p_samples: torch.Tensor | None = None     # (len(checkpoints), n_latents) p_T(y|x) per latent

    def to_json(self) -> dict:
        return {"iteration": self.iteration, **self.means, "checkpoints": self.checkpoints}


@dataclass
class EngineOutput:
    x: torch.Tensor            # final reconstructions (M, C, H, W), CPU float32
    source: torch.Tensor       # index of each reconstruction's latent among all latents
    trace: Trace
    seconds: float
    batch_size: int
    chunks: int
    events: list[str] = field(default_factory=list)


def checkpoints_for(iterations: int, n: int = 40) -> list[int]:
    """Log-spaced iterations (0 and the last included) at which per-latent likelihoods are kept."""
    pts = {0, iterations - 1}
    for k in range(n):
        pts.add(min(iterations - 1, int(round(math.expm1(k / (n - 1) * math.log1p(iterations - 1))))))
    return sorted(pts)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


class Engine:
    def __init__(self, attack: Attack, iterations: int, *, seed: int, amp: bool = True, compile_mode: str = "off",
                 reporter: Reporter = NULL, on_step: Callable[[StepEvent], None] | None = None,
                 hook_every: int = 1):
        self.attack, self.iterations, self.seed = attack, iterations, seed
        self.device = attack.ctx.device
        self.amp, self.reporter, self.on_step, self.hook_every = amp, reporter, on_step, max(1, hook_every)
        self.compile_mode = compile_mode
        self.events: list[str] = []
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick its fastest kernels
        self._fwd = self._compiled() if compile_mode != "off" else attack.forward

    @contextmanager
    def quiet(self):
        """No step hook and no progress inside (a probe run that is not part of the attack)."""
        hook, reporter = self.on_step, self.reporter
        self.on_step, self.reporter = None, NULL
        try:
            yield self
        finally:
            self.on_step, self.reporter = hook, reporter

    def _compiled(self):
        fwd = self.attack.forward

        def as_tuple(lat, y, noise):  # plain tensors out of the compiled region
            o = fwd(lat, y, noise)
            return o.x, o.logits, o.loss, o.id_loss
        try:
            compiled = torch.compile(as_tuple, mode=None if self.compile_mode == "default" else self.compile_mode,
                                     dynamic=False)
            return lambda lat, y, noise: Forward(*compiled(lat, y, noise))
        except Exception as e:  # pragma: no cover - depends on the platform
            self.events.append(f"torch.compile unavailable ({type(e).__name__}: {e}); running eagerly")
            self.compile_mode = "off"
            return self.attack.forward

    # --- one chunk --------------------------------------------------------------------------
    def run_chunk(self, y: torch.Tensor, restarts: torch.Tensor, iterations: int, *, chunk_no: int = 0,
                  chunks: int = 1, index: torch.Tensor | None = None, keep: int | None = None,
                  t0: float | None = None, checkpoints: list[int] = ()):
        a, dev = self.attack, self.device
        t0 = time.monotonic() if t0 is None else t0
        y = y.to(dev)
        if a.gradient_free:
            return self._sample_chunk(y, restarts, iterations, chunk_no, chunks, index, keep, t0, checkpoints)
        lat = {k: v.to(dev).requires_grad_(True) for k, v in a.init(y, restarts, self.seed).items()}
        params = list(lat.values())
        opt = LatentOptimizer(a.optimizer(), params)
        gen = torch.Generator(device=dev).manual_seed(latent_seed(self.seed, int(y[0]), chunk_no, "steps"))
        buf = torch.zeros(iterations, len(TRACE_FIELDS), device=dev)
        ck = {c: i for i, c in enumerate(checkpoints)}
        p_ck = torch.zeros(len(checkpoints), len(y), device=dev)
        report_every = max(1, iterations // 100)
        graphs = self.compile_mode == "reduce-overhead"
        stages = {s: k for k, s in enumerate(a.stage_starts(), 1)}
        for it in range(iterations):
            self.reporter.check()
            if it in stages:  # a staged attack (IF-GMI) searches new tensors from here, with a fresh optimiser
                with torch.no_grad():
                    lat = a.begin_stage(stages[it], {k: v.detach() for k, v in lat.items()}, y)
                lat = {k: v.requires_grad_(True) for k, v in lat.items()}
                params = list(lat.values())
                opt = LatentOptimizer(a.optimizer(), params)
            noise = a.noise(len(y), gen)
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            try:
                with autocast(dev, self.amp):
                    out = self._fwd(lat, y, noise)
            except Exception as e:
                if self._fwd is a.forward or _is_oom(e):
                    raise
                self.events.append(f"compiled step failed ({type(e).__name__}: {str(e)[:200]}); running eagerly")
                self._fwd, self.compile_mode, graphs = a.forward, "off", False
                with autocast(dev, self.amp):
                    out = self._fwd(lat, y, noise)
            grads = torch.autograd.grad(out.loss.float().sum(), params)
            with torch.no_grad():
                gn = torch.stack([g.float().flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
                p = target_likelihood(out.logits, y)
                acc = (out.logits.argmax(1) == y).float()
                buf[it] = torch.stack([out.loss.float().sum(), out.id_loss.float().sum(), p.sum(), acc.sum(),
                                       gn.sum()])
                if it in ck:
                    p_ck[ck[it]] = p
            if self.on_step is not None and it % self.hook_every == 0:  # grad mode on: hooks may differentiate
                self.on_step(StepEvent(it, iterations, index if index is not None else torch.arange(len(y)),
                                       y, {k: v.detach() for k, v in lat.items()}, out.x.detach(),
                                       out.logits.detach(), out.loss.detach(), out.id_loss.detach(), gn, a))
            with torch.no_grad():
                opt.step(list(grads))
                a.project(lat)
            if it % report_every == 0 or it == iterations - 1:
                self._report(buf[it], len(y), it, iterations, chunk_no, chunks, t0)
        for v in params:
            v.requires_grad_(False)
        with autocast(dev, self.amp):
            x, src = a.finalize(lat, y, restarts, self.seed, keep if keep is not None else len(y))
        return x.float().cpu(), src.cpu(), buf.cpu(), p_ck.cpu()

    def _report(self, row: torch.Tensor, n: int, it: int, iterations: int, chunk_no: int, chunks: int, t0: float):
        """Progress of one step (or round): the trace row's means over the chunk's n latents."""
        r = row.tolist()
        self.reporter.report(phase="attack", iteration=it + 1, iterations=iterations, chunk=chunk_no + 1, chunks=chunks,
                             loss=r[0] / n, p_target=r[2] / n, elapsed=round(time.monotonic() - t0, 2))

    def _sample_chunk(self, y, restarts, iterations, chunk_no, chunks, index, keep, t0, checkpoints):
        """A gradient-free attack (the posterior mean): `iterations` rounds of a.sample_step, each returning
        per-latent statistics of what the latent keeps; the trace's gradient norm is 0 (no gradient). The
        step hook sees each latent's reconstruction so far (a.render of the state)."""
        a, dev = self.attack, self.device
        state = a.init(y, restarts, self.seed)
        buf = torch.zeros(iterations, len(TRACE_FIELDS), device=dev)
        ck = {c: i for i, c in enumerate(checkpoints)}
        p_ck = torch.zeros(len(checkpoints), len(y), device=dev)
        report_every = max(1, iterations // 100)
        for it in range(iterations):
            self.reporter.check()
            with autocast(dev, self.amp):
                st = a.sample_step(state, y)
            loss = st["loss"].float()
            buf[it] = torch.stack([loss.sum(), loss.sum(), st["p_target"].float().sum(), st["acc"].float().sum(),
                                   torch.zeros((), device=dev)])
            if it in ck:
                p_ck[ck[it]] = st["p_target"].float()
            if self.on_step is not None and (it % self.hook_every == 0 or it == iterations - 1):
                with torch.no_grad(), autocast(dev, self.amp):
                    x = a.render(state, y)
                    logits = a.T(x)
                self.on_step(StepEvent(it, iterations, index if index is not None else torch.arange(len(y)), y, {},
                                       x.float(), logits.float(), loss, loss, torch.zeros_like(loss), a))
            if it % report_every == 0 or it == iterations - 1:
                self._report(buf[it], len(y), it, iterations, chunk_no, chunks, t0)
        with autocast(dev, self.amp):
            x, src = a.finalize(state, y, restarts, self.seed, keep if keep is not None else len(y))
        return x.float().cpu(), src.cpu(), buf.cpu(), p_ck.cpu()

    # --- the whole run ---------------------------------------------------------------------
    def run(self, y_all: torch.Tensor, r_all: torch.Tensor, per_identity: int, keep: int, batch_size: int
            ) -> EngineOutput:
        """y_all / r_all: identity-major layout, `per_identity` latents per identity; `keep` kept each."""
        t0 = time.monotonic()
        n_ids = len(y_all) // per_identity
        ids_per_chunk = max(1, min(n_ids, batch_size // per_identity if batch_size else n_ids))
        queue = [list(range(i, min(n_ids, i + ids_per_chunk))) for i in range(0, n_ids, ids_per_chunk)]
        cks = checkpoints_for(self.iterations)
        sums = torch.zeros(self.iterations, len(TRACE_FIELDS))
        p_samples = torch.zeros(len(cks), len(y_all))
        xs, srcs, sizes, chunk_no = [], [], [], 0
        while queue:
            group = queue.pop(0)
            idx = torch.cat([torch.arange(g * per_identity, (g + 1) * per_identity) for g in group])
            try:
                x, src, buf, p_ck = self.run_chunk(y_all[idx], r_all[idx], self.iterations, chunk_no=chunk_no,
                                                   chunks=chunk_no + 1 + len(queue), index=idx, keep=keep,
                                                   t0=t0, checkpoints=cks)
            except RuntimeError as e:
                if not _is_oom(e) or len(group) == 1:
                    if _is_oom(e):
                        raise RuntimeError(f"CUDA out of memory with the restarts of a single identity "
                                           f"({per_identity} latents); lower restarts") from e
                    raise
                torch.cuda.empty_cache()
                half = len(group) // 2
                queue = [group[:half], group[half:]] + queue
                self.events.append(f"CUDA out of memory with {len(idx)} latents: halved to "
                                   f"{half * per_identity}")
                continue
            xs.append(x)
            srcs.append(idx[src])
            sums += buf
            p_samples[:, idx] = p_ck
            sizes.append(len(idx))
            chunk_no += 1
        means = {f: (sums[:, i] / len(y_all)).tolist() for i, f in enumerate(TRACE_FIELDS)}
        trace = Trace(list(range(1, self.iterations + 1)), means, cks, p_samples)
        return EngineOutput(torch.cat(xs), torch.cat(srcs), trace, time.monotonic() - t0, max(sizes), chunk_no,
                            self.events)
