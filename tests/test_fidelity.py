"""Fidelity to the papers' code: each update rule / loss / defense term beside a small reference written
here from the paper code's equations (never imported from mivis), on the same fixed tensors."""
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mivis.attacks.base import AttackContext
from mivis.attacks.engine import Engine

Z, K, C, S = 8, 5, 1, 8  # latent dim, classes, channels, image side of the toy G / D / T


def toy_nets(seed=0):
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(Z, C * S * S), nn.Tanh(), nn.Unflatten(1, (C, S, S)))
    D = nn.Sequential(nn.Flatten(), nn.Linear(C * S * S, 1), nn.Flatten(0))
    T = nn.Sequential(nn.Flatten(), nn.Linear(C * S * S, 16), nn.ReLU(), nn.Linear(16, K))
    for m in (G, D, T):
        m.eval().requires_grad_(False)
    return G, D, T


def toy_ctx(G, D, T):
    prior = types.SimpleNamespace(G=G, D=D, z_dim=Z, config={"type": "gmi"})
    return AttackContext(T, None, prior, torch.device("cpu"), K, (C, S, S))


def run_engine(attack, y, restarts, iterations, batch_size=0, keep=None):
    """mivis's engine on identity-major latents; returns the latents seen at every step and the output."""
    seen = []
    eng = Engine(attack, iterations, seed=attack.p["seed"], amp=False,
                 on_step=lambda e: seen.append((e.index.clone(), {k: v.clone() for k, v in e.latents.items()})))
    per = attack.candidates_per_identity(restarts)
    y_all = y.repeat_interleave(per)
    r_all = torch.arange(per).repeat(len(y))
    out = eng.run(y_all, r_all, per, keep or restarts, batch_size)
    return seen, out, y_all, r_all


def gmi_reference(G, D, T, z0, y, iters, lr=0.02, m=0.9, lam=100.0, clip=1.0):
    """The GMI code's attack loop: loss = -D(G(z)).mean() + lam * CE(T(G(z)), y) (mean), Nesterov-form
    momentum v = m*v - lr*g; z += -m*v_prev + (1+m)*v; clip after each step; z0 unclipped."""
    z, v, traj = z0.clone(), torch.zeros_like(z0), []
    for _ in range(iters):
        traj.append(z.clone())
        zz = z.clone().requires_grad_(True)
        fake = G(zz)
        loss = -D(fake).mean() + lam * F.cross_entropy(T(fake), y)
        (g,) = torch.autograd.grad(loss, zz)
        v_prev = v.clone()
        v = m * v - lr * g
        z = (z + (-m * v_prev + (1 + m) * v)).clamp(-clip, clip)
    return traj, z


def gmi_attack(**over):
    from mivis.attacks import ATTACKS
    G, D, T = toy_nets()
    entry = ATTACKS.get("gmi")
    p = entry.params.validate({"device": "cpu", **over})
    return entry.obj(p, toy_ctx(G, D, T)), (G, D, T)


def test_gmi_step_equals_the_gmi_codes_at_batch_100_also_chunked():
    """100 latents (20 identities x 5 restarts), as one GMI-code batch of 100: equal trajectories; chunking
    mivis's batch into 10 latents changes nothing (each latent's step is the batch-100 step)."""
    attack, (G, D, T) = gmi_attack(iterations=30)
    ids = torch.arange(20) % K
    seen, out, y_all, r_all = run_engine(attack, ids, 5, 30)
    z0 = attack.init(y_all, r_all, attack.p["seed"])["z"]
    assert z0.abs().max() > 1.0, "the GMI code starts from an unclipped randn"
    traj, z_end = gmi_reference(G, D, T, z0, y_all, 30)
    assert len(seen) == 30
    for it, (idx, lat) in enumerate(seen):
        assert torch.allclose(lat["z"], traj[it][idx], atol=1e-5), f"step {it}"
    assert torch.allclose(G(z_end), out.x[out.source.argsort()], atol=1e-5)
    # chunks of 2 identities (10 latents): identical trajectories
    seen_c, out_c, _, _ = run_engine(attack, ids, 5, 30, batch_size=10)
    assert out_c.chunks == 10
    z_chunked = torch.zeros_like(z_end)
    for idx, lat in seen_c[29::30]:
        z_chunked[idx] = lat["z"]
    assert torch.allclose(z_chunked, traj[29], atol=1e-5)
    # the effect is not a tolerance artefact: mivis v1's summed step lands elsewhere
    v1, _ = gmi_attack(iterations=30, step="summed-nonpaper")
    seen_v1, _, _, _ = run_engine(v1, ids, 5, 30)
    assert (seen_v1[-1][1]["z"] - traj[29]).abs().max() > 0.1


def test_gmi_step_at_another_reference_batch():
    """ref_batch 60 (KEDMI/LOMMA/TL-DMI's GMI) = the GMI code's loop on a batch of 60 latents."""
    attack, (G, D, T) = gmi_attack(iterations=10, ref_batch=60)
    ids = torch.arange(12) % K
    seen, _, y_all, r_all = run_engine(attack, ids, 5, 10)
    z0 = attack.init(y_all, r_all, 0)["z"]
    traj, _ = gmi_reference(G, D, T, z0, y_all, 10)
    for it, (idx, lat) in enumerate(seen):
        assert torch.allclose(lat["z"], traj[it][idx], atol=1e-5)
