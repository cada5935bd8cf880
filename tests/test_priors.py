"""Priors: nets for 32/64 px and 1/3 channels, training runs, loading, import/export, refusals."""
import pytest
import torch

from mivis.params import ParamError

DATA = {"dataset": "synthetic", "n_private": 6, "image_size": 32, "test_per_identity": 2}
SMOKE = {"device": "cpu", "iterations": 6, "batch_size": 8}


@pytest.mark.parametrize("size,channels,cond", [(32, 1, 0), (64, 3, 0), (32, 3, 5), (64, 1, 5)])
def test_nets_shapes_and_baked_spectral_norm(size, channels, cond):
    from mivis.priors.nets import Discriminator, Generator, bake_spectral_norm
    G = Generator(100, size, channels, 16, cond).eval()
    D = Discriminator(size, channels, 16, cond, "projection" if cond else "classes" if channels == 3 else "none").eval()
    if cond == 0 and channels == 3:
        D.classes  # KEDMI class head exists
    y = torch.arange(4) % max(cond, 1) if cond else None
    x = G(torch.randn(4, 100), y)
    assert x.shape == (4, channels, size, size) and x.abs().max() <= 1
    if not cond:  # folding BatchNorm into the layers before it changes nothing in eval mode
        from mivis.priors.nets import fold_batchnorm
        for bn in G.norms:
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
        z = torch.randn(4, 100)
        ref = G(z)
        assert torch.allclose(fold_batchnorm(G)(z), ref, atol=1e-5) and not any(
            isinstance(m, torch.nn.BatchNorm2d) for m in G.modules())
    before = D(x, y)
    bake_spectral_norm(D)
    assert not any("parametrizations" in k for k in D.state_dict())
    assert torch.allclose(before, D(x, y), atol=1e-5)


def test_diffaug_is_differentiable_and_translation_shifts():
    from mivis.priors.diffaug import cutout, diff_augment, translation
    x = torch.randn(3, 1, 16, 16, requires_grad=True)
    diff_augment(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    img = torch.arange(64.).view(1, 1, 8, 8)
    moved = translation(img.repeat(8, 1, 1, 1))
    assert any(not torch.equal(m, img[0]) for m in moved)
    cut = cutout(torch.ones(4, 1, 8, 8))
    holes = (cut == 0).flatten(1).sum(1)
    assert torch.all((holes >= 4) & (holes <= 16))  # a 4x4 hole, clipped at the border to no less than 2x2

def test_pseudo_labels_take_top_k_per_class():
    from mivis.priors.variants import pseudo_label
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    pairs = pseudo_label(probs, 2)
    got = {(int(i), int(c)) for i, c in pairs}
    assert got == {(0, 0), (2, 0), (1, 1), (3, 1)}


def test_train_load_export_import_roundtrip(ws, tmp_path):
    from mivis.priors import export_prior, import_prior, load_prior, train_prior
    from mivis.runs import Workspace
    events = []
    from mivis.progress import Reporter
    rec = train_prior("gmi", {**SMOKE, "sample_every": 3}, DATA, workspace=ws, reporter=Reporter(events.append))
    assert rec.status == "done" and rec.kind == "prior" and rec.config["params"]["loss"] == "hinge"
    assert rec.file("samples.png").read_bytes()[:4] == b"\x89PNG" and rec.file("samples/iter000003.png").exists()
    assert any(e.get("phase") == "prior" for e in events)
    prior = load_prior(ws, rec.id)
    a = prior.sample(4, seed=1)
    assert a.shape == (4, 1, 32, 32) and torch.equal(a, prior.sample(4, seed=1))
    dest = export_prior(ws, rec.id, tmp_path / "assets" / "p32")
    other = Workspace(tmp_path / "other")
    imp = import_prior(dest, other)
    assert imp.status == "done" and import_prior(dest, other).id == imp.id  # importing twice: same run
    assert torch.allclose(load_prior(other, imp.id).sample(4, seed=1), a)


def test_import_refuses_pickles(ws, tmp_path):
    from mivis.priors import export_prior, import_prior, train_prior
    from mivis.weights import WeightsError
    rec = train_prior("gmi", SMOKE, DATA, workspace=ws)
    dest = export_prior(ws, rec.id, tmp_path / "evil")
    torch.save({"x": torch.zeros(1)}, dest / "generator.safetensors")
    with pytest.raises(WeightsError, match="never unpickles"):
        import_prior(dest, ws)


def test_kedmi_plgmi_need_a_target_and_wgan_gp_runs(ws, trained_target):
    from mivis.priors import train_prior
    with pytest.raises(ParamError, match="target_run"):
        train_prior("kedmi", SMOKE, DATA, workspace=ws)
    with pytest.raises(ParamError, match="not a prior|a finished target"):
        train_prior("plgmi", SMOKE, None, target_run=train_prior("gmi", SMOKE, DATA, workspace=ws).id, workspace=ws)
    with pytest.raises(ParamError, match="diffaug"):
        train_prior("gmi", {**SMOKE, "diffaug": "color,blur"}, DATA, workspace=ws)
    with pytest.raises(ParamError, match="32, 64"):
        train_prior("gmi", SMOKE, {**DATA, "image_size": 48}, workspace=ws)
    k = train_prior("kedmi", SMOKE, None, target_run=trained_target.id, workspace=ws)
    p = train_prior("plgmi", SMOKE, None, target_run=trained_target.id, workspace=ws)
    assert k.parents == [trained_target.id] and p.file("pseudo_labels.json").exists()
    w = train_prior("gmi", {**SMOKE, "loss": "wgan-gp", "iterations": 2}, DATA, workspace=ws)
    assert w.config["net"]["spectral_norm"] is False


def test_cancel_marks_prior_cancelled(ws):
    from mivis.priors import train_prior
    from mivis.progress import Cancelled, Reporter
    rep = Reporter()
    rep.cancel.set()
    with pytest.raises(Cancelled):
        train_prior("gmi", {**SMOKE, "iterations": 200}, DATA, workspace=ws, reporter=rep)
    (run,) = ws.list(kind="prior")
    assert run.status == "cancelled"
