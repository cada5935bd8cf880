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


# ---------------------------------------------------------------- KEDMI -------------------------------------
def log_sum_exp(x):
    """KEDMI's code: m + log(sum(exp(x - m))) over classes."""
    m = x.max(1, keepdim=True).values
    return (m + (x - m).exp().sum(1, keepdim=True).log()).squeeze(1)


def test_kedmi_gan_losses_equal_kedmis_code():
    from mivis.priors.gan_train import kedmi_generator_loss, kedmi_unlabelled_loss
    g = torch.Generator().manual_seed(3)
    out_unlabel, out_fake = torch.randn(64, 7, generator=g) * 3, torch.randn(64, 7, generator=g) * 3
    ref_d = 0.5 * (F.softplus(log_sum_exp(out_unlabel)).mean() - log_sum_exp(out_unlabel).mean()
                   + F.softplus(log_sum_exp(out_fake)).mean())
    assert torch.allclose(kedmi_unlabelled_loss(out_unlabel, out_fake), ref_d, atol=1e-6)
    mom_gen, mom_unlabel = torch.randn(64, 20, generator=g), torch.randn(64, 20, generator=g)
    b = F.softmax(out_fake, 1) * F.log_softmax(out_fake, 1)
    h = -1.0 * b.sum()  # KEDMI's entropy: summed over the batch, not averaged
    ref_g = (mom_gen.mean(0) - mom_unlabel.mean(0)).abs().mean() + 1e-4 * h
    assert torch.allclose(kedmi_generator_loss(mom_gen, mom_unlabel, out_fake, 1e-4), ref_g, atol=1e-6)
    # the realness level (a common shift of all class logits) gets a training signal from this term
    shift = torch.zeros(1, requires_grad=True)
    (gs,) = torch.autograd.grad(kedmi_unlabelled_loss(out_unlabel + shift, out_fake + shift), shift)
    assert gs.abs() > 1e-3


class ToyClassD(nn.Module):
    head = "classes"

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(C * S * S, 12), nn.LeakyReLU(0.2))
        self.real = nn.Linear(12, 1)
        self.classes = nn.Linear(12, 7)

    def features(self, x):
        return self.trunk(x)

    def class_logits(self, f):
        return self.classes(f)

    def forward(self, x):
        return self.real(self.features(x)).squeeze(1)


def test_kedmi_attack_equals_kedmis_code_one_gaussian_per_identity():
    """60 identities (KEDMI's batch): mu 0, log_var 1, z = mu + exp(log_var/2) eps, Adam lr 0.02 on
    softplus(lse) - lse (mean) + 100 CE (mean); the same eps every step. Final: restarts draws per identity."""
    from mivis.attacks import ATTACKS
    G, _, T = toy_nets()
    torch.manual_seed(1)
    D = ToyClassD().eval().requires_grad_(False)
    prior = types.SimpleNamespace(G=G, D=D, z_dim=Z, config={"type": "kedmi", "objective": "kedmi"})
    ctx = AttackContext(T, None, prior, torch.device("cpu"), K, (C, S, S))
    entry = ATTACKS.get("kedmi")
    attack = entry.obj(entry.params.validate({"device": "cpu", "iterations": 15}), ctx)
    assert attack.prior_kind == "lse"  # auto on a prior trained with KEDMI's objective
    n, iters = 60, 15
    eps = [torch.randn(n, Z, generator=torch.Generator().manual_seed(100 + i)) for i in range(iters)]
    it = iter(eps)
    attack.noise = lambda m, gen: {"eps": next(it)}
    y = torch.arange(n) % K
    seen, out, y_all, _ = run_engine(attack, y, 5, iters)
    assert len(y_all) == n  # one latent (Gaussian) per identity, not one per restart
    mu = torch.zeros(n, Z, requires_grad=True)
    log_var = torch.ones(n, Z, requires_grad=True)
    opt = torch.optim.Adam([mu, log_var], lr=0.02)
    for i in range(iters):
        assert torch.allclose(seen[i][1]["mu"], mu.detach(), atol=1e-5), f"mu at step {i}"
        assert torch.allclose(seen[i][1]["log_var"], log_var.detach(), atol=1e-5), f"log_var at step {i}"
        z = mu + torch.exp(0.5 * log_var) * eps[i]
        fake = G(z)
        label = D.class_logits(D.features(fake))
        prior_loss = F.softplus(log_sum_exp(label)).mean() - log_sum_exp(label).mean()
        loss = prior_loss + 100 * F.cross_entropy(T(fake), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert out.x.shape[0] == n * 5 and torch.equal(out.source, torch.arange(n).repeat_interleave(5))


def test_kedmi_refuses_an_untrained_realness_head():
    from mivis.attacks import ATTACKS
    from mivis.params import ParamError
    G, _, T = toy_nets()
    prior = types.SimpleNamespace(G=G, D=ToyClassD(), z_dim=Z, config={"type": "kedmi", "objective": "kedmi"})
    entry = ATTACKS.get("kedmi")
    with pytest.raises(ParamError, match="realness head is untrained"):
        entry.obj(entry.params.validate({"prior_loss": "realness"}),
                  AttackContext(T, None, prior, torch.device("cpu"), K, (C, S, S)))


# ---------------------------------------------------------------- PPA ---------------------------------------
def test_ppa_initial_selection_from_one_shared_pool_scored_on_image_and_flip():
    from mivis.attacks import ATTACKS
    from mivis.attacks.base import per_sample_normal
    G, D, T = toy_nets()
    entry = ATTACKS.get("ppa")
    attack = entry.obj(entry.params.validate({"device": "cpu", "pool": 40, "candidates": 4}), toy_ctx(G, D, T))
    assert attack.p["crop"] == [0.9, 1.0] and attack.p["final_views"] == 100 and attack.p["final_crop"] == [0.5, 0.9]
    y = torch.tensor([0] * 4 + [3] * 4)
    r = torch.arange(4).repeat(2)
    z = attack.init(y, r, seed=7)["z"]
    pool = per_sample_normal((Z,), torch.zeros(40, dtype=torch.long), torch.arange(40), 7, "ppa-pool")
    with torch.no_grad():
        x = G(pool)
        conf = (T(x).softmax(1) + T(x.flip(3)).softmax(1)) / 2  # PPA: the image and its horizontal flip
    for c in (0, 3):
        best = pool[conf[:, c].topk(4).indices]
        assert torch.equal(z[y == c], best)
    # one pool for every identity: identity 3's candidates do not depend on which identities run with it
    alone = attack.init(torch.tensor([3] * 4), torch.arange(4), seed=7)["z"]
    assert torch.equal(alone, z[4:])


def test_ppa_crops_have_the_papers_area_and_no_other_transform():
    from mivis.attacks.ppa import crop_view
    ramp = torch.linspace(-1, 1, 64).expand(1, 1, 64, 64).contiguous()
    r = torch.tensor([[0.0, 0.5, 0.5, 0.9, 0.9, 0.5, 0.5, 0.5]])  # smallest crop, centred, no flip drawn
    for area in ((0.9, 1.0), (0.5, 0.9)):
        v = crop_view(ramp, area, flip=True, r=r)
        width = (v[0, 0, 0, -1] - v[0, 0, 0, 0]).item() / 2 * 64 / 63
        assert abs(width - area[0] ** 0.5) < 0.03  # the side of a crop of area fraction a is sqrt(a)
        assert torch.allclose(v[0, 0, 0], v[0, 0, -1], atol=1e-5)  # no rotation: columns stay constant
    flipped = crop_view(ramp, (1.0, 1.0), flip=True, r=torch.tensor([[0.0, 0.5, 0.5, 0.5, 0.1, 0.5, 0.5, 0.5]]))
    assert torch.allclose(flipped, ramp.flip(3), atol=1e-5)  # area 1 + flip = the mirrored image


# ---------------------------------------------------------------- selection ---------------------------------
def test_best_restart_per_identity_beside_all_restarts():
    from mivis.attacks.run import add_selection
    rows = [{"identity": c, "restart": k, "p_target": p, "eval_top1": ok, "eval_top5": True, "knn_dist": 1.0 + k}
            for c, k, p, ok in [(0, 0, 0.2, False), (0, 1, 0.9, True), (1, 0, 0.8, False), (1, 1, 0.3, True),
                                (2, 0, 0.5, True), (2, 1, 0.1, False)]]
    ev = {"per_reconstruction": rows, "metrics": {}}
    add_selection(ev, "gmi", {}, 200, 0)
    # GMI's code keeps, per identity, the restart the target scores highest: (0,1) right, (1,0) wrong, (2,0) right
    assert ev["metrics"]["attack_acc_top1_selected"]["value"] == pytest.approx(2 / 3)
    assert ev["metrics"]["knn_dist_selected"]["value"] == pytest.approx((2 + 1 + 1) / 3)
    assert ev["selection"]["paper_protocol"] == "selected"
    add_selection(ev, "plgmi", {}, 200, 0)
    assert ev["selection"]["paper_protocol"] == "all restarts"


# ---------------------------------------------------------------- versions ----------------------------------
def test_changed_methods_get_new_sweep_keys_unchanged_ones_keep_theirs():
    from mivis.sweep.steps import trial_steps
    base = {"data": {"dataset": "synthetic"}, "prior": {"type": "gmi"}}
    _, gmi = trial_steps({**base, "attack": {"name": "gmi"}})
    _, wb = trial_steps({**base, "attack": {"name": "whitebox"}})
    steps, _ = trial_steps({**base, "attack": {"name": "gmi"}})
    by_kind = {s.kind: s for s in steps if s.kind != "train" or s.spec.get("role") == "target"}
    assert by_kind["attack"].spec["method_version"] == 2
    assert "method_version" not in by_kind["train"].spec and "method_version" not in by_kind["prior"].spec
    assert gmi["keys"]["target"] == wb["keys"]["target"]  # an undefended target keeps its stored key
    steps, _ = trial_steps({**base, "attack": {"name": "whitebox"}, "target": {"defenses": {"mid": {}}}})
    assert next(s for s in steps if s.spec.get("role") == "target").spec["method_version"] == 2
    assert "method_version" not in next(s for s in steps if s.kind == "attack").spec
    steps, _ = trial_steps({**base, "attack": {"name": "kedmi"}, "prior": {"type": "kedmi"}})
    assert next(s for s in steps if s.kind == "prior").spec["method_version"] == 2


def test_stored_runs_of_the_old_method_replay_with_their_own_step():
    from mivis.attacks.base import replay_params
    old = {"name": "gmi", "params": {"iterations": 100, "lr": 0.02, "clip": 1.0}}
    assert replay_params(old)["step"] == "summed-nonpaper"
    assert "step" not in replay_params({**old, "method_version": 2})
    ppa = {"name": "ppa", "params": {"pool": 200, "init_views": 4}}
    assert replay_params(ppa) == {"pool": 200}
