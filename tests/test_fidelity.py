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


def test_ppa_final_transforms_are_torchvisions_drawn_once_per_batch():
    """PPA's attacks/final_selection.py 42-49: T.RandomResizedCrop(scale (0.5, 0.9), ratio (0.8, 1.2),
    antialias) + T.RandomHorizontalFlip(0.5) on a batch tensor: one draw for the whole batch."""
    tv = pytest.importorskip("torchvision.transforms")
    from mivis.attacks.ppa import batch_transform
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    ref_t = tv.Compose([tv.RandomResizedCrop(size=(32, 32), scale=(0.5, 0.9), ratio=(0.8, 1.2), antialias=True),
                        tv.RandomHorizontalFlip(0.5)])
    shapes = set()
    for s in range(30):
        torch.manual_seed(s)
        ref = ref_t(x)
        torch.manual_seed(s)
        got = batch_transform(x, (0.5, 0.9), (0.8, 1.2), None)
        assert torch.allclose(got, ref, atol=1e-5), f"seed {s}"
        torch.manual_seed(s)
        assert torch.allclose(batch_transform(x[2:3], (0.5, 0.9), (0.8, 1.2), None), got[2:3], atol=1e-5)
        torch.manual_seed(s)
        from mivis.attacks.ppa import resized_crop_box
        shapes.add(resized_crop_box(32, 32, (0.5, 0.9), (0.8, 1.2), None)[2:])
    assert any(h != w for h, w in shapes)  # not square: the aspect ratio is drawn too


def test_ppa_final_selection_scores_as_ppas_code():
    """scores_by_transform (final_selection.py 8-23) over DataLoader batches of one identity's candidates
    (lines 61-66): mean softmax of the class over `iterations` batch-wide draws."""
    tv = pytest.importorskip("torchvision.transforms")
    from mivis.attacks import ATTACKS
    from mivis.attacks.base import latent_seed
    G, D, T = toy_nets()
    entry = ATTACKS.get("ppa")
    attack = entry.obj(entry.params.validate({"device": "cpu", "final_views": 7, "final_batch": 2}),
                       toy_ctx(G, D, T))
    assert attack.p["final_ratio"] == [0.8, 1.2] and attack.p["final_transform"] == "paper"
    x = torch.rand(6, C, S, S) * 2 - 1
    y = torch.tensor([1, 1, 1, 4, 4, 4])
    cand = torch.tensor([2, 0, 1, 1, 2, 0])  # candidate numbers, not in row order
    got = attack.final_confidence(x, y, 9, cand)
    ref_t = tv.Compose([tv.RandomResizedCrop(size=(S, S), scale=(0.5, 0.9), ratio=(0.8, 1.2), antialias=True),
                        tv.RandomHorizontalFlip(0.5)])
    ref = torch.zeros(6)
    for c in (1, 4):
        rows = [i for i in cand.argsort().tolist() if y[i] == c]  # this identity's candidates in order
        for b in range(0, len(rows), 2):
            idx = torch.tensor(rows[b:b + 2])
            torch.manual_seed(latent_seed(9, c, b // 2, "ppa-final-batch"))
            score = torch.zeros(len(idx))
            for _ in range(7):
                score += T(ref_t(x[idx])).softmax(1)[torch.arange(len(idx)), y[idx]]
            ref[idx] = score / 7
    assert torch.allclose(got, ref, atol=1e-5)
    old = entry.obj(entry.params.validate({"device": "cpu", "final_views": 7,
                                           "final_transform": "square-per-image-nonpaper"}), toy_ctx(G, D, T))
    assert (old.final_confidence(x, y, 9, cand) - ref).abs().max() > 1e-3


# ---------------------------------------------------------------- selection ---------------------------------
def gmi_code_selection(logits_by_restart):
    """GMI's code (Celeba/attack.py 22-24, 70-80, 88-91): max_score = zeros; per restart in seed order, for each
    identity i: if score[i, i] > max_score[i] keep that restart (max_iden[i] = E's prediction); an identity
    never kept retains max_iden 0. Returns the kept restart per identity (None: never kept)."""
    n = len(logits_by_restart[0])
    max_score, kept = [0.0] * n, [None] * n
    for seed, scores in enumerate(logits_by_restart):
        for i in range(n):
            if scores[i] > max_score[i]:
                max_score[i], kept[i] = scores[i], seed
    return kept


def test_best_restart_by_gmis_rule_and_by_probability():
    from mivis.attacks.run import add_selection
    g = torch.Generator().manual_seed(11)
    n_id, n_r = 40, 5
    logits = torch.randn(n_r, n_id, K, generator=g) * 2  # raw target logits per restart and identity
    y = torch.arange(n_id) % K
    logit_y = logits.gather(2, y.expand(n_r, n_id)[..., None]).squeeze(2)
    p_y = logits.softmax(2).gather(2, y.expand(n_r, n_id)[..., None]).squeeze(2)
    right = torch.rand(n_r, n_id, generator=g) > 0.5  # E's verdict per reconstruction
    rows = [{"identity": i, "restart": r, "target_logit": float(logit_y[r, i]), "p_target": float(p_y[r, i]),
             "eval_top1": bool(right[r, i]), "eval_top5": True, "knn_dist": float(r + 1)}
            for i in range(n_id) for r in range(n_r)]
    ev = {"per_reconstruction": rows, "metrics": {}}
    add_selection(ev, "gmi", {}, 200, 0)
    kept = gmi_code_selection(logit_y.tolist())
    ref = sum(bool(right[k, i]) for i, k in enumerate(kept) if k is not None) / n_id
    assert ev["metrics"]["attack_acc_top1_selected"]["value"] == pytest.approx(ref)
    assert ev["metrics"]["selected_none_kept"] == sum(k is None for k in kept) > 0  # logits <= 0 never kept
    by_p = p_y.argmax(0)
    ref_p = sum(bool(right[by_p[i], i]) for i in range(n_id)) / n_id
    assert ev["metrics"]["attack_acc_top1_selected_prob"]["value"] == pytest.approx(ref_p)
    assert sum(k is not None and k != int(by_p[i]) for i, k in enumerate(kept)) > 0  # the rules differ here
    assert ev["selection"]["paper_protocol"] == "selected"
    assert "GMI's code" in ev["selection"]["rules"]["selected"]
    # LOMMA's evaluation averages over its seeds without selection, on either base
    add_selection(ev, "lomma", {"base": "gmi"}, 200, 0)
    assert ev["selection"]["paper_protocol"] == "all restarts"
    add_selection(ev, "plgmi", {}, 200, 0)
    assert ev["selection"]["paper_protocol"] == "all restarts"
    # rows stored before the logit was kept: only the labelled probability rule
    old = {"per_reconstruction": [{k: v for k, v in r.items() if k != "target_logit"} for r in rows], "metrics": {}}
    add_selection(old, "gmi", {}, 200, 0)
    assert "attack_acc_top1_selected" not in old["metrics"] and "attack_acc_top1_selected_prob" in old["metrics"]


# ---------------------------------------------------------------- versions ----------------------------------
def test_changed_methods_get_new_sweep_keys_unchanged_ones_keep_theirs():
    from mivis.sweep.steps import trial_steps
    base = {"data": {"dataset": "synthetic"}, "prior": {"type": "gmi"}}
    _, gmi = trial_steps({**base, "attack": {"name": "gmi"}})
    _, wb = trial_steps({**base, "attack": {"name": "whitebox"}})
    steps, _ = trial_steps({**base, "attack": {"name": "gmi"}})
    by_kind = {s.kind: s for s in steps if s.kind != "train" or s.spec.get("role") == "target"}
    assert by_kind["attack"].spec["method_version"] == 3  # GMI's selection rule changed in version 3
    assert "method_version" not in by_kind["train"].spec and "method_version" not in by_kind["prior"].spec
    assert gmi["keys"]["target"] == wb["keys"]["target"]  # an undefended target keeps its stored key
    steps, _ = trial_steps({**base, "attack": {"name": "whitebox"}, "target": {"defenses": {"mid": {}}}})
    assert next(s for s in steps if s.spec.get("role") == "target").spec["method_version"] == 2
    assert "method_version" not in next(s for s in steps if s.kind == "attack").spec
    steps, _ = trial_steps({**base, "attack": {"name": "kedmi"}, "prior": {"type": "kedmi"}})
    assert next(s for s in steps if s.kind == "prior").spec["method_version"] == 2
    steps, _ = trial_steps({**base, "attack": {"name": "whitebox"}, "target": {"defenses": {"negls": {}}}})
    assert next(s for s in steps if s.spec.get("role") == "target").spec["method_version"] == 3  # PPA's schedule


def test_stored_runs_of_the_old_method_replay_with_their_own_step():
    from mivis.attacks.base import replay_params
    old = {"name": "gmi", "params": {"iterations": 100, "lr": 0.02, "clip": 1.0}}
    assert replay_params(old)["step"] == "summed-nonpaper"
    assert "step" not in replay_params({**old, "method_version": 2})
    ppa = {"name": "ppa", "params": {"pool": 200, "init_views": 4}}
    assert replay_params(ppa) == {"pool": 200}
    assert replay_params({**ppa, "method_version": 2})["final_transform"] == "square-per-image-nonpaper"
    assert "final_transform" not in replay_params({**ppa, "method_version": 3})


# ---------------------------------------------------------------- LOMMA (method version 3) ------------------
def toy_lomma(base, G, D, n_students=2, **over):
    """A LOMMA attack on toy nets with its students and public feature mean set (no distillation)."""
    from mivis.attacks import ATTACKS
    from mivis.models import Classifier
    torch.manual_seed(5)
    T = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(C * S * S, 16), nn.ReLU()), 16, K).eval().requires_grad_(False)
    students = [nn.Sequential(nn.Flatten(), nn.Linear(C * S * S, K)).eval().requires_grad_(False)
                for _ in range(n_students)]
    kind = {"gmi": {"type": "gmi"}, "kedmi": {"type": "kedmi", "objective": "kedmi"}}[base]
    prior = types.SimpleNamespace(G=G, D=D, z_dim=Z, config=kind)
    entry = ATTACKS.get("lomma")
    attack = entry.obj(entry.params.validate({"device": "cpu", "base": base, **over}),
                       AttackContext(T, None, prior, torch.device("cpu"), K, (C, S, S)))
    attack.students = students
    attack.mu = torch.randn(16, generator=torch.Generator().manual_seed(6)).abs()
    return attack, T, students


def lomma_iden_loss(T, students, mu, fake, y, lam):
    """LOMMA's code (Re-thinking_MI attack.py iden_loss, lines 83-104, variant 'ours' = logit loss + model
    augmentation): NLLLoss on raw logits summed over [T, students] / len, plus lam * reg of the TARGET's
    features only, reg = torch.mean((feat - fea_mean)^2) over batch and features (reg_loss, lines 12-18)."""
    feat = T.embed(fake)
    loss = F.nll_loss(T.head(feat), y)
    for s in students:
        loss = loss + F.nll_loss(s(fake), y)
    return loss / (1 + len(students)) + lam * torch.mean((feat - mu.repeat(len(y), 1)).pow(2))


def test_lomma_on_gmi_latents_equal_lommas_code_at_the_defaults():
    """LOMMA's `inversion` (attack.py 188-264): bs 60 latents, Total = -D.mean() + 100 * Iden_Loss (line 239),
    Nesterov step, clamp. mivis at its defaults (lam 1 inside the x100) after 25 steps: < 1e-3 apart."""
    G, D, _ = toy_nets()
    attack, T, students = toy_lomma("gmi", G, D, iterations=26)
    ids = torch.arange(12) % K  # 12 identities x 5 restarts = LOMMA's batch of 60
    seen, _, y_all, r_all = run_engine(attack, ids, 5, 26)  # seen[25]: the latents after 25 updates
    z = attack.init(y_all, r_all, attack.p["seed"])["z"].clone()
    v = torch.zeros_like(z)
    for _ in range(25):
        zz = z.clone().requires_grad_(True)
        fake = G(zz)
        total = -D(fake).mean() + 100 * lomma_iden_loss(T, students, attack.mu, fake, y_all, 1.0)
        (g,) = torch.autograd.grad(total, zz)
        v_prev = v.clone()
        v = 0.9 * v - 0.02 * g
        z = (z + (-0.9 * v_prev + 1.9 * v)).clamp(-1, 1)
    idx, lat = seen[25]
    assert (lat["z"] - z[idx]).abs().max() < 1e-3
    # not a tolerance artefact: mivis v2's regulariser outside the x100 lands elsewhere ...
    v2, _, _ = toy_lomma("gmi", G, D, iterations=26, reg="outside-nonpaper")
    v2.mu, v2.students = attack.mu, students
    seen_v2, _, _, _ = run_engine(v2, ids, 5, 26)
    assert (seen_v2[25][1]["z"] - z[seen_v2[25][0]]).abs().max() > 0.05
    # ... and equals the code's when its weight is moved inside by hand (100 x lam)
    v2w, _, _ = toy_lomma("gmi", G, D, iterations=26, reg="outside-nonpaper", reg_weight=100.0)
    v2w.mu, v2w.students = attack.mu, students
    seen_w, _, _, _ = run_engine(v2w, ids, 5, 26)
    assert (seen_w[25][1]["z"] - z[seen_w[25][0]]).abs().max() < 1e-3


def test_lomma_on_kedmi_latents_equal_lommas_code_at_the_defaults():
    """LOMMA's `dist_inversion` (attack.py 108-186): mu 0, log_var 1, Adam 0.02, z = mu + exp(log_var/2) eps
    clamped to [-1, 1] (clipz), Prior = softplus(lse) - lse (means), Total = Prior + 100 * Iden_Loss (156)."""
    G, _, _ = toy_nets()
    torch.manual_seed(1)
    D = ToyClassD().eval().requires_grad_(False)
    iters, n = 25, 60
    attack, T, students = toy_lomma("kedmi", G, D, iterations=iters + 1)
    eps = [torch.randn(n, Z, generator=torch.Generator().manual_seed(200 + i)) * 2 for i in range(iters + 1)]
    it = iter(eps)
    attack.noise = lambda m, gen: {"eps": next(it)}
    y = torch.arange(n) % K
    seen, _, _, _ = run_engine(attack, y, 5, iters + 1)  # seen[i]: the latents after i updates
    mu = torch.zeros(n, Z, requires_grad=True)
    log_var = torch.ones(n, Z, requires_grad=True)
    opt = torch.optim.Adam([mu, log_var], lr=0.02)
    for i in range(iters):
        assert (seen[i][1]["mu"] - mu.detach()).abs().max() < 1e-3, f"mu at step {i}"
        z = (mu + torch.exp(0.5 * log_var) * eps[i]).clamp(-1, 1)
        fake = G(z)
        label = D.class_logits(D.features(fake))
        prior = F.softplus(log_sum_exp(label)).mean() - log_sum_exp(label).mean()
        total = prior + 100 * lomma_iden_loss(T, students, attack.mu, fake, y, 1.0)
        opt.zero_grad()
        total.backward()
        opt.step()
    assert (seen[iters][1]["mu"] - mu.detach()).abs().max() < 1e-3
    assert (seen[iters][1]["log_var"] - log_var.detach()).abs().max() < 1e-3
    it = iter(eps)
    v2, _, _ = toy_lomma("kedmi", G, D, iterations=iters + 1, reg="outside-nonpaper")
    v2.mu, v2.students, v2.noise = attack.mu, students, lambda m, gen: {"eps": next(it)}
    seen_v2, _, _, _ = run_engine(v2, y, 5, iters + 1)
    assert (seen_v2[iters][1]["mu"] - mu.detach()).abs().max() > 0.05


def test_lomma_defaults_and_help_follow_the_released_configs():
    from mivis.attacks import ATTACKS
    from mivis.attacks.base import replay_params
    ps = ATTACKS.get("lomma").params
    assert ps["reg"].default == "paper" and ps["reg_weight"].default == 1.0 and ps["id_weight"].default == 100.0
    assert "2400 on KEDMI" in ps["iterations"].help and "effective 100" in ps["reg_weight"].help
    old = {"name": "lomma", "params": {"base": "gmi", "reg_weight": 1.0}, "method_version": 2}
    assert replay_params(old)["reg"] == "outside-nonpaper"  # a stored v2 run replays with its own loss
    assert "reg" not in replay_params({**old, "method_version": 3})
