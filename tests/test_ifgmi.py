"""IF-GMI beside a reference written from its code (attacks/optimize.py): stage by stage, a fresh Adam on the
searched tensor, the Poincare loss averaged over the batch, then the l1-ball projection around the stage's
start; and the PCA prior. The reference composes the generator's blocks itself (never G.head / G.tail)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mivis.attacks.base import AttackContext
from mivis.attacks.engine import Engine
from mivis.priors.nets import Generator


def l1_ball_reference(v: torch.Tensor, r) -> torch.Tensor:
    """Rows of v: argmin |u - v|_2 s.t. |u|_1 <= r, by bisection on the soft threshold theta
    (sum max(|v| - theta, 0) = r); rows already inside are kept."""
    v = v.double().reshape(len(v), -1) if v.dim() > 1 else v.double()[None]
    r = torch.as_tensor(r, dtype=torch.float64).reshape(-1).expand(len(v))
    lo, hi = torch.zeros(len(v), dtype=torch.float64), v.abs().amax(1)
    for _ in range(100):
        mid = (lo + hi) / 2
        over = (v.abs() - mid[:, None]).clamp_min(0).sum(1) > r
        lo, hi = torch.where(over, mid, lo), torch.where(over, hi, mid)
    out = (v.abs() - hi[:, None]).clamp_min(0) * v.sign()
    return torch.where((v.abs().sum(1) <= r)[:, None], v, out)


def test_l1_ball_projection_matches_the_soft_threshold_reference():
    from mivis.attacks.ifgmi import project_l1_ball
    g = torch.Generator().manual_seed(0)
    v = torch.randn(6, 3, 4, 4, generator=g) * 2
    radius = torch.tensor([1.0, 5.0, 20.0, 1000.0, 0.0, 0.5])
    out = project_l1_ball(v, radius)
    for i in range(len(v)):
        if radius[i] <= 0:  # 0 = no ball
            assert torch.equal(out[i], v[i])
            continue
        ref = l1_ball_reference(v[i].flatten(), float(radius[i])).float().view_as(v[i])
        assert torch.allclose(out[i], ref, atol=1e-5)
        assert out[i].abs().sum() <= radius[i] * (1 + 1e-5)
    assert torch.equal(out[3], v[3])  # already inside the ball: unchanged


K = 4  # classes of the toy target


def toy_world(seed=0):
    torch.manual_seed(seed)
    G = Generator(z_dim=8, img_size=32, channels=1, width=4).eval().requires_grad_(False)
    for bn in G.norms:  # non-trivial eval statistics, as a trained generator has
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    T = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, K))
    T.eval().requires_grad_(False)
    return G, T


def blocks_reference(G, z):
    """The generator written out block by block (fc -> BN -> ReLU, then upsample -> conv -> BN -> ReLU)."""
    h = F.relu(G.norms[0](G.fc(z).view(len(z), G.c0, G.s0, G.s0)))
    outs = [h]
    for i, conv in enumerate(G.convs):
        h = F.relu(G.norms[i + 1](conv(F.interpolate(h, scale_factor=2, mode="nearest"))))
        outs.append(h)
    return outs


def rest_reference(G, h, block):
    for i in range(block, len(G.convs)):
        h = F.relu(G.norms[i + 1](G.convs[i](F.interpolate(h, scale_factor=2, mode="nearest"))))
    return torch.tanh(G.out(h))


def poincare_reference(logits, y, eps=1e-4):
    u = logits / logits.abs().sum(1, keepdim=True)
    v = (F.one_hot(y, logits.shape[1]).float() - eps).clamp(0, 1)
    du = ((u - v) ** 2).sum(1)
    return torch.acosh(1 + 2 * du / ((1 - (u * u).sum(1)) * (1 - (v * v).sum(1))))


def ifgmi_reference(G, T, z0, y, steps, radius, lr, beta):
    """IF-GMI's optimize(): stage 0 searches z, stage k the output of block k-1; Adam made anew each stage
    (betas beta, beta); loss = poincare(T(x), y) over the batch; after each step every searched tensor is put back in
    the l1 ball (radius = fraction x its l1 norm at the stage's start, per sample; 0 = none)."""
    var = z0.clone()
    for k, n in enumerate(steps):
        if k == 1:
            var = blocks_reference(G, var)[0]
        elif k > 1:
            var = F.relu(G.norms[k - 1](G.convs[k - 2](F.interpolate(var, scale_factor=2, mode="nearest"))))
        start = var.clone()
        r = start.flatten(1).abs().sum(1) * radius[k]
        var = var.clone().requires_grad_(True)
        opt = torch.optim.Adam([var], lr=lr, betas=(beta, beta))
        for _ in range(n):
            x = G(var) if k == 0 else rest_reference(G, var, k - 1)
            # the code's .mean(); Adam's step is invariant to the 1/batch factor (but for eps), and its first step
            # is lr * sign(g): the sum keeps float rounding from flipping the sign of near-zero components
            loss = poincare_reference(T(x), y).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if radius[k] > 0:
                with torch.no_grad():
                    var.copy_(start + l1_ball_reference(var - start, r).float().view_as(var))
        var = var.detach()
    return G(var) if len(steps) == 1 else rest_reference(G, var, len(steps) - 2)


@pytest.mark.parametrize("steps,radius", [([4, 2, 2, 2], [0.0, 0.3, 0.3, 0.3]), ([3, 3], [0.5, 0.05])])
def test_ifgmi_stages_match_the_reference(steps, radius, monkeypatch):
    from mivis.attacks import ATTACKS, ifgmi
    from mivis.attacks.ifgmi import IFGMI
    import types
    # the crops are PPA's (pinned in tests/test_fidelity.py); here the staging, optimiser and balls are pinned,
    # on the whole image: Adam with betas 0.1 is nearly sign descent, so 1e-7 of resampling would flip steps
    monkeypatch.setattr(ifgmi, "crop_view", lambda x, *a, **k: x)
    G, T = toy_world()
    prior = types.SimpleNamespace(G=G, D=None, z_dim=8, config={"type": "gmi"})
    ctx = AttackContext(T, None, prior, torch.device("cpu"), K, (1, 32, 32))
    p = ATTACKS.get("ifgmi").params.validate({"device": "cpu", "pool": 12, "iterations": sum(steps),
                                              "stage_steps": steps, "radius": radius, "lr": 0.2,
                                              "crop": [1.0, 1.0]})
    attack = IFGMI(p, ctx)
    y = torch.tensor([0, 0, 1, 1, 3, 3])
    r = torch.tensor([0, 1, 0, 1, 0, 1])
    z0 = attack.init(y, r, seed=3)["z"].clone()
    eng = Engine(attack, sum(steps), seed=3, amp=False)
    out = eng.run(y, r, 2, 2, 0)
    ref = ifgmi_reference(G, T, z0, y, steps, radius, lr=0.2, beta=0.1)
    assert out.x.shape == ref.shape
    assert (out.x - ref).abs().max() < 1e-3, f"max |diff| {(out.x - ref).abs().max():.2e}"
    # every stage moved the images: the intermediate stages are searched, not skipped
    assert (out.x - G(z0)).abs().max() > 1e-2


def test_ifgmi_refuses_more_stages_than_the_generator_has_blocks():
    from mivis.attacks import ATTACKS
    from mivis.attacks.ifgmi import IFGMI
    from mivis.params import ParamError
    import types
    G, T = toy_world()
    prior = types.SimpleNamespace(G=G, D=None, z_dim=8, config={"type": "gmi"})
    ctx = AttackContext(T, None, prior, torch.device("cpu"), K, (1, 32, 32))
    params = ATTACKS.get("ifgmi").params
    with pytest.raises(ParamError, match="feature block"):
        IFGMI(params.validate({"stage_steps": [1] * 6, "radius": [0.1] * 6, "iterations": 6}), ctx)
    with pytest.raises(ParamError, match="one value per stage"):
        IFGMI(params.validate({"stage_steps": [5, 5], "radius": [0.1]}), ctx)


def test_stage_lengths_follow_the_code_and_scale_to_other_budgets():
    from mivis.attacks.ifgmi import stage_lengths
    assert stage_lengths(80, [50, 10, 10, 10]) == [50, 10, 10, 10]
    scaled = stage_lengths(100, [50, 10, 10, 10])
    assert sum(scaled) == 100 and scaled[1:] == [12, 12, 12] or sum(scaled) == 100 and min(scaled) >= 12


# ---------------------------------------------------------------- the PCA prior ---------------------------
def test_pca_prior_reproduces_public_faces_and_its_density_prefers_them(tmp_path):
    from mivis.priors.pca import build_pca_nets, fit_pca, pca_net_config
    from mivis.progress import NULL
    g = torch.Generator().manual_seed(0)
    # 30 "faces": a smooth mean plus 5 hidden directions, 16 px
    base = torch.randn(5, 256, generator=g)
    coef = torch.randn(30, 5, generator=g)
    x = (0.3 * torch.tanh(coef @ base / 4)).view(30, 1, 16, 16)
    cfg = pca_net_config({"components": 0, "flip": False}, 30, 16, 1)
    assert cfg["z_dim"] == 29
    G, D = build_pca_nets(cfg)
    info = fit_pca(G, D, x, False, torch.device("cpu"), NULL)
    assert info["components"] == 29 and info["explained_variance"] == pytest.approx(1.0)
    # every public image is G of its whitened coefficients (exactly: it lies in the span)
    z, res = D.coefficients(x)
    assert torch.allclose(G(z), x, atol=1e-4) and res.max() < 1e-6
    # D: public faces are far more likely than noise of the same range
    noise = torch.rand(30, 1, 16, 16, generator=g) * 0.6 - 0.3
    assert D(x).mean() > D(noise).mean() + 10
    with pytest.raises(Exception, match="support at most"):
        pca_net_config({"components": 100, "flip": True}, 30, 16, 1)


def test_ifgmi_with_ppas_final_selection_keeps_the_most_robust_candidates():
    from mivis.attacks import ATTACKS
    from mivis.attacks.ifgmi import IFGMI
    import types
    G, T = toy_world()
    prior = types.SimpleNamespace(G=G, D=None, z_dim=8, config={"type": "gmi"})
    ctx = AttackContext(T, None, prior, torch.device("cpu"), K, (1, 32, 32))
    p = ATTACKS.get("ifgmi").params.validate({"device": "cpu", "pool": 12, "iterations": 4, "stage_steps": [2, 2],
                                              "radius": [0, 0.3], "final_selection": True, "candidates": 4,
                                              "final_views": 3})
    attack = IFGMI(p, ctx)
    assert attack.candidates_per_identity(2) == 4
    y = torch.tensor([1] * 4 + [2] * 4)
    out = Engine(attack, 4, seed=0, amp=False).run(y, torch.arange(4).repeat(2), 4, 2, 0)
    assert out.x.shape == (4, 1, 32, 32)  # 2 kept of 4 per identity
    assert sorted(set((out.source // 4).tolist())) == [0, 1]
