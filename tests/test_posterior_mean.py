"""The posterior-mean attack (mivis/attacks/posterior.py) beside a reference written from its definition: per
restart one seeded pool of prior latents; per identity c the pixel mean of G over the top_k latents by
log p_T(c | G(z)). Plus a toy whose answer is known, the refusal, cancel and progress."""
import io
import json
import threading
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mivis.attacks.base import AttackContext, latent_seed
from mivis.attacks.engine import Engine
from mivis.attacks import posterior
from mivis.attacks.posterior import PosteriorMean
from mivis.jobs.kinds import JobContext
from mivis.jobs.previews import _Preview
from mivis.params import ParamError
from mivis.progress import NULL, Cancelled, Reporter


def make(G, T, z_dim, classes, shape=(1, 32, 32), **p):
    prior = types.SimpleNamespace(G=G, D=None, z_dim=z_dim, config={"type": "gmi"})
    ctx = AttackContext(T, None, prior, torch.device("cpu"), classes, shape)
    params = {"iterations": 3, "samples_per_step": 40, "top_k": 7, "restarts": 2, **p}
    return PosteriorMean(params, ctx), params


def reference(G, T, seed, restart, classes, iterations, per_step, k):
    """From the definition, all at once: the restart's whole pool, then each class's top k, then the mean."""
    gen = torch.Generator().manual_seed(latent_seed(seed, -1, restart, "pmean-pool"))
    z = torch.cat([torch.randn(per_step, G.z_dim, generator=gen) for _ in range(iterations)])
    with torch.no_grad():
        logp = F.log_softmax(T(G(z)), 1)
        return torch.stack([G(z[logp[:, c].topk(k).indices]).mean(0) for c in range(classes)])


class LinearG(nn.Module):
    """A toy prior: z (16) -> a 4x4 image upsampled to 32x32, squashed to [-1, 1] (a quadrant's mean varies
    with a standard deviation of about 0.3 from sample to sample)."""
    z_dim = 16

    def forward(self, z):
        return torch.tanh(F.interpolate(z.view(len(z), 1, 4, 4), scale_factor=8, mode="nearest"))


class QuadrantT(nn.Module):
    """Class c is 'quadrant c is bright': logit_c = 8 x the mean of quadrant c."""
    def forward(self, x):
        q = [x[:, :, :16, :16], x[:, :, :16, 16:], x[:, :, 16:, :16], x[:, :, 16:, 16:]]
        return torch.stack([8 * v.mean((1, 2, 3)) for v in q], 1)


def quadrant_means(x):
    return torch.stack([x[:, :, :16, :16].mean((1, 2, 3)), x[:, :, :16, 16:].mean((1, 2, 3)),
                        x[:, :, 16:, :16].mean((1, 2, 3)), x[:, :, 16:, 16:].mean((1, 2, 3))], 1)


def test_posterior_mean_matches_the_reference_and_does_not_depend_on_chunking():
    torch.manual_seed(0)
    G = LinearG().eval()
    T = nn.Sequential(nn.Conv2d(1, 3, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16 * 16, 4)).eval()
    T.requires_grad_(False)
    attack, p = make(G, T, 16, 4, iterations=4, samples_per_step=30, top_k=12)  # each round replaces part of the kept
    y = torch.tensor([0, 1, 2, 3]).repeat_interleave(2)  # 4 identities x 2 restarts
    r = torch.tensor([0, 1]).repeat(4)
    whole = Engine(attack, p["iterations"], seed=5, amp=False).run(y, r, 2, 2, 0)
    chunked = Engine(attack, p["iterations"], seed=5, amp=False).run(y, r, 2, 2, 2)  # one identity per chunk
    assert chunked.chunks == 4 and whole.chunks == 1
    for restart in (0, 1):
        ref = reference(G, T, 5, restart, 4, p["iterations"], p["samples_per_step"], p["top_k"])
        mine = r == restart
        assert torch.allclose(whole.x[mine], ref, atol=1e-5)
        assert torch.allclose(chunked.x[mine], ref, atol=1e-5)
    assert not torch.allclose(whole.x[r == 0], whole.x[r == 1], atol=1e-3)  # the restarts' pools differ
    # the trace: the kept samples' mean p_T rises as the pool grows; no gradient
    p_t = whole.trace.means["p_target"]
    assert len(p_t) == p["iterations"] and p_t[-1] >= p_t[0]
    assert whole.trace.means["grad_norm"] == [0.0] * p["iterations"]


def test_a_round_scored_in_parts_keeps_the_same_samples(monkeypatch):
    """SCORE_BATCH bounds the samples through G and the target at once: rounds of 30 scored 7 at a time
    (parts of 7, 7, 7, 7 and 2, each merged into the top k) give the reference's averages."""
    torch.manual_seed(2)
    G = LinearG().eval()
    T = nn.Sequential(nn.Conv2d(1, 3, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16 * 16, 4)).eval()
    T.requires_grad_(False)
    monkeypatch.setattr(posterior, "SCORE_BATCH", 7)
    parts = []
    real = PosteriorMean._merge
    monkeypatch.setattr(PosteriorMean, "_merge", lambda self, st, y, z: (parts.append(len(z[0])), real(self, st, y, z)))
    attack, p = make(G, T, 16, 4, iterations=3, samples_per_step=30, top_k=12)
    y, r = torch.arange(4).repeat_interleave(2), torch.tensor([0, 1]).repeat(4)
    out = Engine(attack, 3, seed=4, amp=False).run(y, r, 2, 2, 0)
    assert parts == [7, 7, 7, 7, 2] * 3
    for restart in (0, 1):
        assert torch.allclose(out.x[r == restart], reference(G, T, 4, restart, 4, 3, 30, 12), atol=1e-5)

def test_posterior_mean_finds_the_bright_quadrant_the_toy_target_wants():
    """A target that names the bright quadrant: each identity's posterior mean is bright exactly there (the
    answer is known), while averaging the whole pool (top_k = pool) gives the prior mean, with no such
    quadrant: the effect comes from the target's ranking, and it is large (about 0.55 against -0.2 in the other quadrants, and 0.0)."""
    G, T = LinearG(), QuadrantT()
    y, r = torch.arange(4), torch.zeros(4, dtype=torch.long)
    attack, p = make(G, T, 16, 4, iterations=5, samples_per_step=400, top_k=50)
    q = quadrant_means(Engine(attack, 5, seed=0, amp=False).run(y, r, 1, 1, 0).x)
    own = q.diagonal()
    others = q[~torch.eye(4, dtype=torch.bool)].view(4, 3)
    assert (own > 0.25).all() and (own - others.max(1).values > 0.2).all(), q
    everything, _ = make(G, T, 16, 4, iterations=5, samples_per_step=400, top_k=2000)
    q_all = quadrant_means(Engine(everything, 5, seed=0, amp=False).run(y, r, 1, 1, 0).x)
    assert q_all.abs().max() < 0.06, q_all


def test_top_k_larger_than_the_pool_is_refused():
    with pytest.raises(ParamError, match=r"top_k \(500\).*iterations x samples_per_step = 120"):
        make(LinearG(), QuadrantT(), 16, 4, top_k=500)


def test_cancel_stops_between_rounds_and_progress_is_reported():
    events, stop = [], threading.Event()

    def on_report(fields):
        events.append(fields)
        if fields.get("iteration") == 2:
            stop.set()
    attack, p = make(LinearG(), QuadrantT(), 16, 4, iterations=6)
    eng = Engine(attack, 6, seed=0, amp=False, reporter=Reporter(on_report, stop))
    with pytest.raises(Cancelled):
        eng.run(torch.arange(4), torch.zeros(4, dtype=torch.long), 1, 1, 0)
    assert [e["iteration"] for e in events if e.get("phase") == "attack"] == [1, 2]
    assert all(0 <= e["p_target"] <= 1 for e in events)


def test_the_step_hook_sees_each_rounds_average_for_the_live_view(tmp_path):
    """After round j the hook's images are exactly the posterior mean of the first j rounds' pool (the
    reference on a pool j rounds long), with the target's logits on them; the job's live preview writes
    them as a round of a sampling attack."""
    torch.manual_seed(1)
    G = LinearG().eval()
    T = nn.Sequential(nn.Conv2d(1, 3, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16 * 16, 4)).eval()
    T.requires_grad_(False)
    attack, p = make(G, T, 16, 4, iterations=4, samples_per_step=30, top_k=12)
    y, r = torch.arange(4), torch.zeros(4, dtype=torch.long)
    seen = []
    preview = _Preview(JobContext("j", None, NULL, "cpu", tmp_path), every=0)

    def hook(ev):
        seen.append(ev)
        preview(ev)
    out = Engine(attack, 4, seed=3, amp=False, on_step=hook).run(y, r, 1, 1, 0)
    assert [ev.iteration for ev in seen] == [0, 1, 2, 3]
    for ev in seen:
        ref = reference(G, T, 3, 0, 4, ev.iteration + 1, 30, 12)
        assert torch.allclose(ev.x, ref, atol=1e-5), ev.iteration
        assert torch.allclose(ev.logits, T(ev.x), atol=1e-5)
        assert ev.latents == {} and (ev.grad_norm == 0).all()
    assert not torch.allclose(seen[0].x, seen[-1].x, atol=1e-3)  # the averages change as the pool grows
    assert torch.equal(seen[-1].x, out.x)
    meta = json.loads((tmp_path / "preview.json").read_text())
    assert meta == {"iteration": 4, "iterations": 4, "identities": [0, 1, 2, 3], "sampling": True}
    from PIL import Image
    with Image.open(io.BytesIO((tmp_path / "preview.png").read_bytes())) as im:
        assert im.size[0] > 4 * 32  # four faces in a row (at twice their size)


def test_memory_caps_the_chunk_and_refuses_what_one_identity_cannot_fit(monkeypatch):
    """A round's peak for a chunk of L latents is (4 x top_k x L + SCORE_BATCH x restarts) images (the merge
    holds four stacks of kept images, plus one part of every restart's samples): choose_batch keeps a chunk
    under MAX_CHUNK_BYTES (results unchanged), and an identity's restarts that alone exceed it are refused
    when the attack is built, with every factor named."""
    from mivis.attacks.invert import choose_batch
    px = 3 * 32 * 32 * 4  # colour images: the channels count
    one_identity = (4 * 12 * 2 + posterior.SCORE_BATCH * 2) * px
    monkeypatch.setattr(posterior, "MAX_CHUNK_BYTES", one_identity - 1)
    with pytest.raises(ParamError, match=r"pmean keeps top_k images.*12 x 2 restarts x 3x32x32.*lower top_k or restarts"):
        make(LinearG(), QuadrantT(), 16, 4, shape=(3, 32, 32), top_k=12)
    monkeypatch.setattr(posterior, "MAX_CHUNK_BYTES", one_identity)
    assert make(LinearG(), QuadrantT(), 16, 4, shape=(3, 32, 32), top_k=12)[0].max_chunk() == 2

    torch.manual_seed(1)
    G = LinearG().eval()
    T = nn.Sequential(nn.Conv2d(1, 3, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16 * 16, 4)).eval()
    T.requires_grad_(False)
    monkeypatch.setattr(posterior, "MAX_CHUNK_BYTES", (4 * 12 * 4 + posterior.SCORE_BATCH * 2) * 32 * 32 * 4)
    attack, p = make(G, T, 16, 4, iterations=3, samples_per_step=30, top_k=12)
    y, r = torch.arange(4).repeat_interleave(2), torch.tensor([0, 1]).repeat(4)
    eng = Engine(attack, 3, seed=6, amp=False)
    batch = choose_batch(attack, eng, y, r, 2, 0)  # CPU: all 8 latents, but the cap is 4 (two identities)
    assert batch == 4 and choose_batch(attack, eng, y, r, 2, 100) == 4
    out = eng.run(y, r, 2, 2, batch)
    assert out.chunks == 2
    for restart in (0, 1):
        assert torch.allclose(out.x[r == restart], reference(G, T, 6, restart, 4, 3, 30, 12), atol=1e-5)


def test_a_quiet_engine_calls_no_hook_and_reports_nothing():
    """choose_batch's memory probe on CUDA runs two steps of the attack itself: inside Engine.quiet they
    reach neither the live preview nor the progress."""
    calls, reports = [], []
    attack, _ = make(LinearG(), QuadrantT(), 16, 4)
    eng = Engine(attack, 3, seed=0, amp=False, on_step=calls.append, reporter=Reporter(reports.append))
    y, r = torch.arange(4), torch.zeros(4, dtype=torch.long)
    with eng.quiet():
        eng.run_chunk(y, r, 2)
    assert calls == [] and reports == []
    eng.run_chunk(y, r, 2)
    assert len(calls) == 2 and len(reports) == 2
