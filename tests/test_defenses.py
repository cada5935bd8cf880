"""Defenses: registration, refusals before any run, and what each one does to training."""
import math

import pytest
import torch
import torch.nn.functional as F

from mivis.defenses import DEFENSES, instantiate
from mivis.defenses.bido import hsic
from mivis.defenses.calor import inverse_focal
from mivis.defenses.negls import smoothed_ce
from mivis.defenses.tldmi import freeze_report
from mivis.models import build_classifier, model_config, model_from_config
from mivis.params import ParamError
from mivis.progress import Reporter
from mivis.surgery import layer_groups, stage_scales
from mivis.train import _lr_at, load_classifier, train_run
from mivis.weights import load_tensors

ONE = {"arch": "resnet18", "epochs": 1, "batch_size": 16, "device": "cpu"}


def test_every_defense_is_registered_with_documented_params():
    assert set(DEFENSES.names()) == {"skips", "tts", "tldmi", "calor", "bido", "mid", "negls"}
    for e in DEFENSES.entries():
        assert e.help and e.meta["paper"] and all(p.help for p in e.params)


@pytest.mark.parametrize("train,defenses,match", [
    ({}, {"skips": {"scales": [1, 1, 1, 1.5]}}, r"\[0, 1\]"),
    ({}, {"skips": {"scales": [1, 0]}}, r"4 stages \(layer1, layer2, layer3, layer4\)"),
    ({"arch": "vgg16"}, {"skips": {}}, "choose one of: resnet18, resnet34"),
    ({"arch": "mobilenetv2"}, {"skips": {"scales": [0, 1, 1, 1, 1, 1, 1]}}, "stages with skips: 2, 3, 4, 5, 6"),
    ({}, {"skips": {"mode": "attn"}}, "ViT/DeiT only"),
    ({}, {"tldmi": {"freeze": 3}}, "needs a pre-trained start"),
    ({}, {"calor": {"rank": 600}}, "allowed: 1 to 512"),
    ({"arch": "densenet121"}, {"tts": {}}, "choose one of: resnet18"),
    ({"epochs": 5}, {"tts": {"switch_epoch": 5}}, "allowed: 1 to 4"),
    ({}, {"calor": {}, "mid": {}}, "choose one of them"),
    ({}, {"negls": {"smoothing": 0.1}}, r"\[-1, 0\]"),
])
def test_impossible_settings_are_refused_before_any_run(ws, tiny_data, train, defenses, match):
    with pytest.raises(ParamError, match=match):
        train_run("target", {**ONE, **train}, tiny_data, defenses=defenses, workspace=ws)
    assert ws.list() == []


def test_cli_spelling_aliases_and_resolved_config(ws, tiny_data):
    import signal
    from mivis.cli import main
    handler = signal.getsignal(signal.SIGINT)
    rc = main(["train", "--dataset", "synthetic", "--n-private", "6", "--image-size", "32",
               "--test-per-identity", "2", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
               "--skips", "1,1,0.5,0", "--defense", "bido", "--calor-rank", "16", "--calor-adapt-epochs", "0"])
    signal.signal(signal.SIGINT, handler)  # the CLI installs its own Ctrl-C handler
    assert rc == 0
    (run,) = ws.list()
    d = run.config["model"]["defenses"]
    assert d["skips"] == {"scales": [1.0, 1.0, 0.5, 0.0], "mode": "both", "preset": "paper-text", "block_scales": None,
                          "layer3_split": False}
    assert d["bido"] == {"a_x": 0.05, "a_y": 0.5, "sigma": 5.0} and d["calor"]["rank"] == 16
    model, _ = load_classifier(ws, run.id)
    assert stage_scales(model) == [1.0, 1.0, 0.5, 0.0] and model.head[1].out_features == 16


def test_tldmi_frozen_params_and_bn_stats(ws, tiny_data):
    pub = train_run("public", ONE, tiny_data, workspace=ws)
    model = model_from_config(pub.config["model"] | {"num_classes": 6})
    rows = freeze_report(model)
    k = next(r["k"] for r in rows if r["first_trained"] == "body.layer3.0.conv1+body.layer3.0.bn1")
    with pytest.raises(ParamError, match=r"allowed: 0 to 20"):  # resnet18 has 21 layer groups
        train_run("target", {**ONE, "init_run": pub.id}, tiny_data, defenses={"tldmi": {"freeze": 21}},
                  workspace=ws)
    assert len(ws.list()) == 1
    assert rows[0]["fraction"] == 1.0 and rows[k]["trainable"] < rows[0]["trainable"]
    tgt = train_run("target", {**ONE, "init_run": pub.id}, tiny_data,  # combined with RoLSS
                    defenses={"tldmi": {"freeze": k, "bn_stats": "frozen-nonpaper"}, "skips": {}}, workspace=ws)
    proj = sum(p.numel() for p in model.body.layer4[0].downsample.parameters())  # RoLSS drops it
    assert tgt.metrics["trainable_params"] == rows[k]["trainable"] - proj
    a, b = load_tensors(pub.dir / "weights.safetensors")[0], load_tensors(tgt.dir / "weights.safetensors")[0]
    frozen_modules = {m for g in layer_groups(model)[:k] for m in g["modules"]}
    frozen = [n for n in b if n.rsplit(".", 1)[0] in frozen_modules]
    assert any("running_var" in n for n in frozen) and any("num_batches_tracked" in n for n in frozen)
    assert all(torch.equal(a[n], b[n]) for n in frozen)
    assert not torch.equal(a["body.layer4.1.conv2.weight"], b["body.layer4.1.conv2.weight"])
    assert not torch.equal(a["body.layer3.0.bn1.running_var"], b["body.layer3.0.bn1.running_var"])
    # TL-DMI's code (the default): requires_grad=False only; frozen BatchNorms keep updating their statistics
    paper = train_run("target", {**ONE, "init_run": pub.id}, tiny_data, defenses={"tldmi": {"freeze": k}},
                      workspace=ws)
    c = load_tensors(paper.dir / "weights.safetensors")[0]
    stats = [n for n in frozen if n.endswith(("running_mean", "running_var"))]
    params = [n for n in frozen if not n.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert params and all(torch.equal(a[n], c[n]) for n in params)
    assert all(not torch.equal(a[n], c[n]) for n in stats)
    assert paper.metrics["trainable_params"] == rows[k]["trainable"]


@pytest.mark.parametrize("arch,defense,scales", [
    ("resnet18", {}, [1, 1, 1, 0]),                                   # the paper's text: last stage removed
    ("resnet18", {"preset": "released"}, [1, 1, 1, 0.6]),             # the released ResNet-18 "skip" config
    ("densenet121", {"preset": "released"}, [1, 0, 1, 1]),            # released: dense block 2
    ("densenet169", {"preset": "released"}, [0, 1, 1, 1]),            # released: dense block 1
    ("densenet201", {}, [1, 1, 1, 0]),
    ("resnet34", {"preset": "released"}, [1, 1, 1, 0]),                # RoLSS's released ResNet-34..152: [1,1,1,0]
    ("resnet50", {"preset": "released"}, [1, 1, 1, 0]),
])
def test_rolss_presets_paper_text_and_released(arch, defense, scales):
    cfg = model_config(arch, 6, 1, 32, defenses={"skips": defense})
    (sk,) = instantiate(cfg["defenses"], cfg)
    assert sk.p["scales"] == scales
    assert stage_scales(model_from_config(cfg | {"defenses": {"skips": dict(sk.p)}})) == scales


def test_vit_skips_per_block_and_the_released_first_block():
    cfg = model_config("vit_tiny", 6, 1, 32, defenses={"skips": {"preset": "released"}})
    (sk,) = instantiate(cfg["defenses"], cfg)
    assert sk.p["block_scales"] == [0.0] + [1.0] * 11  # only the first of the 12 blocks: not a group of 3
    m = model_from_config(cfg | {"defenses": {"skips": dict(sk.p)}})  # a stored run rebuilds the same
    got = [(b.attn_scale, b.mlp_scale) for b in m.body.blocks]
    # the code's ViT/DeiT configs say mode mlp: block 1's MLP residual only (tests/test_rolss_code.py)
    assert got == [(1.0, 0.0)] + [(1.0, 1.0)] * 11 and stage_scales(m)[0] == 0.0 and sk.p["mode"] == "mlp"
    one = {"skips": {"block_scales": [1, 1, 1, 1, 0.5, 1, 1, 1, 1, 1, 1, 1], "mode": "attn"}}
    cfg = model_config("vit_tiny", 6, 1, 32, defenses=one)
    m = model_from_config(cfg)
    assert [b.attn_scale for b in m.body.blocks][3:6] == [1.0, 0.5, 1.0]
    assert all(getattr(b, "mlp_scale", 1.0) == 1.0 for b in m.body.blocks)
    with pytest.raises(ParamError, match="12 transformer blocks"):
        instantiate({"skips": {"block_scales": [1, 0]}}, model_config("vit_tiny", 6, 1, 32))
    with pytest.raises(ParamError, match="ViT/DeiT only"):
        instantiate({"skips": {"block_scales": [1, 0]}}, model_config("resnet18", 6, 1, 32))
    with pytest.raises(ParamError, match="has no configuration for efficientnet_b0"):
        instantiate({"skips": {"preset": "released"}}, model_config("efficientnet_b0", 6, 1, 32))


def test_tts_switches_once_keeps_weights_and_saves_the_switched_model(ws, tiny_data):
    cfg = model_config("resnet18", 6, 1, 32, defenses={"tts": {"switch_epoch": 1}})
    (tts,) = instantiate(cfg["defenses"], cfg)
    model = build_classifier("resnet18", 6, 1, 32)
    torch.nn.init.normal_(model.body.layer4[1].bn2.weight)
    trained = model.body.layer4[1].bn2.weight.clone()

    class T:
        main_epochs = 2
    assert tts.on_epoch_start(0, model, T) is model and stage_scales(model)[3] == 1.0
    tts.on_epoch_start(1, model, T)
    assert stage_scales(model)[3] == 0.0 and model.body.layer4[0].downsample is None
    assert torch.equal(model.body.layer4[1].bn2.weight, trained)  # trained weights are not reset
    events = []
    rec = train_run("target", {**ONE, "epochs": 2}, tiny_data, defenses={"tts": {"switch_epoch": 1}},
                    workspace=ws, reporter=Reporter(events.append))
    w = load_tensors(rec.dir / "weights.safetensors")[0]
    assert "body.layer4.0.downsample.0.weight" not in w and "body.layer3.0.downsample.0.weight" in w
    lrs = [e["lr"] for e in events if e.get("phase") == "train"]
    assert lrs == [_lr_at(rec.config["train"], i, len(lrs)) for i in range(len(lrs))]  # one schedule
    assert stage_scales(load_classifier(ws, rec.id)[0]) == [1.0, 1.0, 1.0, 0.0]


def test_calor_head_loss_and_adaptation_phase(ws, tiny_data):
    p = torch.linspace(0.05, 0.999, 2000)
    logits = torch.stack([p.log(), (1 - p).log()], 1)
    per = torch.stack([inverse_focal(logits[i:i + 1], torch.tensor([0]), 0.25, 8.0) for i in range(len(p))])
    assert abs(p[per.argmin()].item() - math.exp(-1 / 8)) < 2e-3  # minimum at p* = exp(-1/gamma) = 0.88
    assert torch.isclose(per[100], 0.25 * p[100] ** 8 * p[100].log())
    events = []
    rec = train_run("target", {**ONE, "lr": 1e-3}, tiny_data, defenses={"calor": {"rank": 8, "adapt_epochs": 1}},
                    workspace=ws, reporter=Reporter(events.append))
    steps = [e for e in events if e.get("phase") == "train"]
    assert {e["epoch"] for e in steps} == {1, 2}
    assert all(math.isclose(e["lr"], 1e-3 * 0.05) for e in steps if e["epoch"] == 2)
    head = load_classifier(ws, rec.id)[0].head
    assert [type(m).__name__ for m in head] == ["BatchNorm1d", "Linear", "Tanh", "Linear"]
    assert (head[1].in_features, head[1].out_features, head[3].out_features) == (512, 8, 6)


def test_mid_kl_in_nats_and_seeded_sampling_at_test_time_as_mids_code():
    cfg = model_config("resnet18", 6, 1, 32, defenses={"mid": {}}) | {"defense_version": 2}
    torch.manual_seed(0)
    m = model_from_config(cfg)
    (mid,) = instantiate(cfg["defenses"], cfg)
    f = torch.randn(4, 512)
    m.head.train()
    a, b = m.head(f), m.head(f)
    assert not torch.equal(a, b) and m.head.kl > 0
    # MID's code: statis = encoder(f); mu = statis[:, :k]; std = softplus(statis[:, k:] - 5);
    # info_loss = -0.5 * (1 + 2 log std - mu^2 - std^2).sum(1).mean()  (nats)
    st = m.head.encoder(f)
    mu, std = st[:, :256], F.softplus(st[:, 256:] - 5)
    ref_kl = -0.5 * (1 + 2 * std.log() - mu.pow(2) - std.pow(2)).sum(1).mean()
    assert torch.isclose(m.head.kl, ref_kl, rtol=1e-5)
    ce = torch.tensor(1.0)
    assert torch.isclose(mid.loss(ce, model=m, x=None, y=None, logits=a, epoch=0, trainer=None),
                         ce + 0.003 * ref_kl)
    # test / attack time: z = mu + std * eps from a generator seeded when the model is built
    m.head.eval()
    first, second = m.head(f), m.head(f)
    assert not torch.equal(first, second) and m.head.encoder.out_features == 512
    m.head.reset_sampler()
    assert torch.equal(m.head(f), first)
    eps = torch.randn(4, 256, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(first, m.head.fc(mu + std * eps), atol=1e-6)
    # the labelled deterministic variant, and a method-version-1 run (bits, z = mu at test time)
    det = model_from_config(model_config("resnet18", 6, 1, 32, defenses={"mid": {"test_time": "mean-nonpaper"}})
                            | {"defense_version": 2}).head.eval()
    assert torch.equal(det(f), det(f))
    old = model_from_config(model_config("resnet18", 6, 1, 32, defenses={"mid": {}})).head
    old.load_state_dict(m.head.state_dict())
    assert torch.equal(old.eval()(f), old.fc(mu))
    old.train()(f)
    assert torch.isclose(old.kl, ref_kl / math.log(2), rtol=1e-5)


def ppa_ls_scheduler(label_smoothing, num_epochs, epoch):
    """PPA's train_model.py ls_scheduler (lines 51-58), 0-based epoch as models/classifier.py line 288 calls it."""
    if epoch < 50:
        return 0.0
    elif epoch < 75:
        factor = 1 / (num_epochs - 50)
        return label_smoothing * factor * (epoch + 1 - 50)
    else:
        return label_smoothing


def test_negls_follows_ppas_schedule():
    from mivis.defenses.negls import scheduled_smoothing, scheduled_smoothing_v2
    ref = [ppa_ls_scheduler(-0.05, 100, e) for e in range(100)]
    assert [scheduled_smoothing(-0.05, e, 100) for e in range(100)] == pytest.approx(ref, abs=1e-12)
    assert ref[74] == pytest.approx(-0.025) and ref[75] == -0.05  # half the factor, then a jump to it
    v2 = [scheduled_smoothing_v2(-0.05, e, 100) for e in range(100)]
    assert sum(abs(a - b) > 1e-9 for a, b in zip(v2, ref)) == 24  # method version 2's ramp: epochs 50 and 52-74
    assert max(abs(a - b) for a, b in zip(v2, ref)) == pytest.approx(0.023)
    # scaled to the run's epochs: 8 epochs -> half 4, three quarters 6
    assert [scheduled_smoothing(-0.05, e, 8) for e in range(8)] == pytest.approx(
        [0, 0, 0, 0, -0.0125, -0.025, -0.05, -0.05])
    logits, y = torch.randn(8, 6), torch.arange(8) % 6

    class T:
        main_epochs = 10
    cfg = model_config("resnet18", 6, 1, 32, defenses={"negls": {}}) | {"defense_version": 3}
    (neg,) = instantiate(cfg["defenses"], cfg)
    assert torch.isclose(neg.task_loss(logits, y, epoch=4, trainer=T), F.cross_entropy(logits, y))
    assert torch.isclose(neg.task_loss(logits, y, epoch=5, trainer=T), smoothed_ce(logits, y, -0.01))
    assert torch.isclose(neg.task_loss(logits, y, epoch=8, trainer=T), smoothed_ce(logits, y, -0.05))
    # a run trained by method version 2 keeps its own ramp (its label), v1 the constant factor
    (old,) = instantiate(cfg["defenses"], cfg | {"defense_version": 2})
    assert old.smoothing_at(7, 10) == pytest.approx(scheduled_smoothing_v2(-0.05, 7, 10)) != neg.smoothing_at(7, 10)
    const = instantiate({"negls": {"schedule": "constant-nonpaper"}}, cfg)[0]
    assert torch.isclose(const.task_loss(logits, y, epoch=0, trainer=T), smoothed_ce(logits, y, -0.05))


def test_negls_and_bido_losses():
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.isclose(smoothed_ce(logits, y, 0.1), F.cross_entropy(logits, y, label_smoothing=0.1))
    logp = F.log_softmax(logits, 1)
    manual = (1.05 * -logp.gather(1, y[:, None]).squeeze(1) + 0.05 * logp.mean(1)).mean()
    assert torch.isclose(smoothed_ce(logits, y, -0.05), manual)
    margins = [torch.tensor([[m, 0.0, 0.0, 0.0, 0.0]]) for m in (5.0, 10.0, 20.0)]
    neg = [smoothed_ce(z, torch.tensor([0]), -0.05).item() for z in margins]
    pos = [smoothed_ce(z, torch.tensor([0]), 0.1).item() for z in margins]
    assert neg[0] > neg[1] > neg[2] and pos[2] > pos[1]  # no confidence ceiling with eps < 0
    g = torch.Generator().manual_seed(0)
    y = torch.arange(16) % 4
    onehot = F.one_hot(y, 4).float()
    aligned = y.float()[:, None] * 2 + 0.01 * torch.randn(16, 1, generator=g)
    noise = torch.randn(16, 1, generator=g) * 2
    assert hsic(aligned, onehot, 5.0, b_linear=True) > 2 * hsic(noise, onehot, 5.0, b_linear=True)
    x = torch.randn(16, 50, generator=g)
    assert hsic(x[:, :3], x, 5.0) > 1.5 * hsic(noise, x, 5.0)  # features derived from X depend on X
    # against BiDO's formula written out in float64
    a, b, m = x[:, :3].double(), x.double(), 16
    h = torch.eye(m, dtype=torch.float64) - 1 / m
    ka = torch.exp(-torch.cdist(a, a) ** 2 / (2 * 25 * 3)) @ h
    kb = torch.exp(-torch.cdist(b, b) ** 2 / (2 * 25 * 50)) @ h
    eye = 1e-5 * m * torch.eye(m, dtype=torch.float64)
    ref = (ka @ torch.inverse(ka + eye) * (kb @ torch.inverse(kb + eye)).T).sum()
    assert abs(hsic(x[:, :3], x, 5.0).item() - ref.item()) < 1e-4


@pytest.mark.parametrize("defenses", [{"bido": {}, "skips": {}}, {"mid": {}}, {"negls": {}}])
def test_defended_runs_train_and_reload(ws, tiny_data, defenses):
    rec = train_run("target", ONE, tiny_data, defenses=defenses, workspace=ws)
    assert rec.status == "done" and set(rec.config["model"]["defenses"]) == set(defenses)
    model, _ = load_classifier(ws, rec.id)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 6)


def test_bido_changes_the_training_loss(ws, tiny_data):
    cfg = model_config("resnet18", 6, 1, 32, defenses={"bido": {}})
    (bido,) = instantiate(cfg["defenses"], cfg)
    torch.manual_seed(0)
    m = build_classifier("resnet18", 6, 1, 32).train()
    bido.on_epoch_start(0, m, None)
    x, y = torch.randn(8, 1, 32, 32), torch.arange(8) % 6
    logits = m(x)
    ce = F.cross_entropy(logits, y)
    total = bido.loss(ce, model=m, x=x, y=y, logits=logits, epoch=0, trainer=None)
    assert len(bido._z) == 0 and not torch.isclose(total, ce)
    with torch.no_grad():
        m.eval()(x)
    assert bido._z == []  # evaluation forwards are not captured
