"""The GAN training loop shared by the three prior types (variants add loss terms).

Hinge loss with a spectral-norm D (default) or WGAN-GP; DiffAugment of real and fake batches;
an EMA copy of G is what gets saved and used by attacks.

KEDMI's objective (variant.objective "kedmi", as in KEDMI's code): D's realness is the logsumexp
(lse) of its class logits; D minimises the soft-label CE on public images plus the semi-supervised
term 0.5 * (E[softplus(lse_real)] - E[lse_real] + E[softplus(lse_fake)]); G minimises feature
matching mean_d |E[f_fake] - E[f_real]| plus entropy_weight x the entropy of D's class prediction
SUMMED over the batch. The realness head and the GAN `loss` (hinge / WGAN-GP) are then unused
(`loss` still decides D's spectral norm).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..data import batches, is_lazy
from ..device import autocast, prepare, to_device
from ..progress import Reporter
from .diffaug import diff_augment


@dataclass
class Variant:
    """Extra ingredients of KEDMI / PLG-MI. Tensors live on the CPU and are moved by the loop."""
    soft_labels: torch.Tensor | None = None   # KEDMI: (N_public, K) target softmax
    cls_weight: float = 0.0
    entropy_weight: float = 0.0
    fm_weight: float = 0.0
    objective: str = ""                        # KEDMI: "kedmi" (KEDMI's code) or "hinge-nonpaper" (mivis v1)
    pairs: torch.Tensor | None = None          # PLG-MI: (M, 2) [public index, pseudo label]
    target: torch.nn.Module | None = None      # PLG-MI: target for the inversion loss on fakes
    inv_weight: float = 0.0
    num_classes: int = 0


@dataclass
class GanResult:
    G: torch.nn.Module
    D: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1 - decay)
        for be, bm in zip(ema.buffers(), model.buffers()):
            be.copy_(bm)


def kedmi_unlabelled_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """KEDMI's semi-supervised D term: realness = lse of the class logits;
    0.5 * (E[softplus(lse_real)] - E[lse_real] + E[softplus(lse_fake)])."""
    lr, lf = logits_real.logsumexp(1), logits_fake.logsumexp(1)
    return 0.5 * (F.softplus(lr).mean() - lr.mean() + F.softplus(lf).mean())


def kedmi_generator_loss(f_fake: torch.Tensor, f_real: torch.Tensor, logits_fake: torch.Tensor,
                         entropy_weight: float) -> torch.Tensor:
    """KEDMI's G loss: feature matching mean_d |E[f_fake] - E[f_real]| + w * entropy summed over the batch."""
    fm = (f_fake.mean(0) - f_real.mean(0)).abs().mean()
    entropy = -(logits_fake.softmax(1) * logits_fake.log_softmax(1)).sum()
    return fm + entropy_weight * entropy


def _gradient_penalty(D, real, fake, y):
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    xh = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = D(xh, y) if y is not None else D(xh)
    (g,) = torch.autograd.grad(out.float().sum(), xh, create_graph=True)
    return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()


def train_gan(G, D, public_x: torch.Tensor, p: dict, device: torch.device, variant: Variant,
              reporter: Reporter, fixed_z: torch.Tensor, fixed_y: torch.Tensor | None) -> GanResult:
    from ..attacks.augment import random_view
    from ..attacks.losses import max_margin
    torch.manual_seed(p["seed"])
    G, D = prepare(G, device).train(), prepare(D, device).train()
    ema = copy.deepcopy(G).eval() if p["ema"] > 0 else G
    opt_g = torch.optim.Adam(G.parameters(), lr=p["lr_g"], betas=(p["beta1"], 0.999 if p["loss"] == "hinge" else 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=p["lr_d"], betas=(p["beta1"], 0.999 if p["loss"] == "hinge" else 0.9))
    gen = torch.Generator(device=device).manual_seed(p["seed"])
    cpu_gen = torch.Generator().manual_seed(p["seed"] + 1)
    soft = variant.soft_labels.to(device) if variant.soft_labels is not None else None
    pairs = variant.pairs.to(device) if variant.pairs is not None else None
    K = variant.num_classes
    bs, zd, policy, hinge = p["batch_size"], G.z_dim, p["diffaug"], p["loss"] == "hinge"
    kedmi = variant.objective == "kedmi"
    feed = None
    if is_lazy(public_x):
        # folder data stays on disk: indices from their own seeded stream, read ahead by workers
        X, n_draw = None, len(variant.pairs) if variant.pairs is not None else len(public_x)
        idx_gen = torch.Generator().manual_seed(p["seed"] + 2)
        draws = (torch.randint(0, n_draw, (bs,), generator=idx_gen) for _ in range(p["iterations"] * p["d_steps"]))
        rows = variant.pairs[:, 0] if variant.pairs is not None else None
        feed = batches(public_x, None, draws, device, rows=rows)
    else:
        X = public_x.to(device)
    aug = (lambda x: diff_augment(x, policy, gen)) if policy else (lambda x: x)
    history, snaps, t0 = [], [], time.monotonic()
    sample_every = p["sample_every"]

    def real_batch():
        if feed is not None:
            x, idx = next(feed)
            x, idx = to_device(x, device), idx.to(device)
        else:
            n = pairs.shape[0] if pairs is not None else X.shape[0]
            idx = torch.randint(0, n, (bs,), generator=gen, device=device)
        if pairs is not None:
            img_idx, y = pairs[idx, 0], pairs[idx, 1]
        else:
            img_idx, y = idx, None
        if feed is None:
            x = X[img_idx]
        if p["flip"]:
            f = torch.rand(bs, generator=gen, device=device) < 0.5
            x = torch.where(f[:, None, None, None], x.flip(3), x)
        return x, img_idx, y

    def fake_batch():
        z = torch.randn(bs, zd, generator=gen, device=device)
        y = torch.randint(0, K, (bs,), generator=gen, device=device) if G.num_classes else None
        return G(z, y) if y is not None else G(z), y

    for it in range(1, p["iterations"] + 1):
        reporter.check()
        # --- discriminator ---
        for _ in range(p["d_steps"]):
            real, img_idx, y_real = real_batch()
            with torch.no_grad(), autocast(device):
                fake, y_fake = fake_batch()
            with autocast(device):
                d_real, f_real = D(aug(real), y_real, with_features=True)
                d_fake, f_fake_d = D(aug(fake.float()), y_fake, with_features=True)
                if kedmi:
                    lg_real, lg_fake = D.class_logits(f_real).float(), D.class_logits(f_fake_d).float()
                    d_loss = kedmi_unlabelled_loss(lg_real, lg_fake)
                    d_real, d_fake = lg_real.logsumexp(1), lg_fake.logsumexp(1)  # KEDMI's realness
                else:
                    d_real, d_fake = d_real.float(), d_fake.float()
                    if hinge:
                        d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
                    else:
                        d_loss = d_fake.mean() - d_real.mean()
                if soft is not None and variant.cls_weight > 0:
                    lg = D.class_logits(f_real).float()
                    d_loss = d_loss + variant.cls_weight * -(soft[img_idx] * lg.log_softmax(1)).sum(1).mean()
            if not hinge and not kedmi:
                d_loss = d_loss + 10 * _gradient_penalty(lambda x, y=None: D(aug(x), y), real, fake.float(), y_real)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        # --- generator ---
        with autocast(device):
            fake, y_fake = fake_batch()
            fake = fake.float()
            d_out, f_fake = D(aug(fake), y_fake, with_features=True)
            if kedmi:
                with torch.no_grad():
                    f_real_g = D.features(aug(real_batch()[0])).float()
                g_loss = kedmi_generator_loss(f_fake.float(), f_real_g, D.class_logits(f_fake).float(),
                                              variant.entropy_weight)
            else:
                g_loss = -d_out.float().mean()
            if soft is not None and not kedmi:
                if variant.entropy_weight > 0:
                    pr = D.class_logits(f_fake).float().softmax(1)
                    g_loss = g_loss + variant.entropy_weight * -(pr * pr.clamp_min(1e-12).log()).sum(1).mean()
                if variant.fm_weight > 0:
                    g_loss = g_loss + variant.fm_weight * (f_fake.float().mean(0) - f_real.detach().float().mean(0)).abs().mean()
            if variant.target is not None and variant.inv_weight > 0:
                out = variant.target(random_view(fake, gen))
                g_loss = g_loss + variant.inv_weight * max_margin(out, y_fake).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if ema is not G:
            _ema_update(ema, G, p["ema"])
        if it % 25 == 0 or it == p["iterations"]:
            if not (torch.isfinite(d_loss) and torch.isfinite(g_loss)):
                raise FloatingPointError(f"GAN training diverged at iteration {it}; lower the learning rates")
            row = {"iteration": it, "d_loss": d_loss.item(), "g_loss": g_loss.item(),
                   "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item(),
                   "elapsed": round(time.monotonic() - t0, 2)}
            history.append(row)
            reporter.report(phase="prior", iterations=p["iterations"], **row)
        if sample_every and it % sample_every == 0 and it != p["iterations"]:
            snaps.append((it, _samples(ema, fixed_z, fixed_y, device)))
    D.eval()
    snaps.append((p["iterations"], _samples(ema, fixed_z, fixed_y, device)))
    return GanResult(ema.eval(), D, history, snaps)


@torch.no_grad()
def _samples(G, z, y, device) -> torch.Tensor:
    was = G.training
    G.eval()
    out = (G(z.to(device), y.to(device)) if y is not None else G(z.to(device))).float().cpu()
    G.train(was)
    return out
