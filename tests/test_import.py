"""Importing a classifier trained elsewhere: round trip, class order, refusals, normalisation, size check."""
import pickle

import pytest
import torch

from mivis.data import load_split
from mivis.importing import ImportFlagged, export_timm, import_model
from mivis.params import ParamError
from mivis.weights import WeightsError, load_tensors, save_weights

DATA = {"dataset": "synthetic", "n_private": 6, "image_size": 32, "test_per_identity": 2}
ARCH = "timm:convnext_atto"  # any timm name, trained by mivis (LayerNorm learns this toy data)
# 12 epochs with flips: 92-96% held-out over training seeds (6 without: 67-83%, 8 of 12 images against the tests' 50%)
EPOCHS = 12


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mivis.runs import Workspace
    from mivis.train import train_run
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    target = train_run("target", {"arch": ARCH, "device": "cpu", "batch_size": 8, "epochs": EPOCHS, "augment": "light"},
                       DATA, workspace=ws)
    out = tmp_path_factory.mktemp("files") / "model.safetensors"
    export_timm(ws, target.id, out)
    return {"ws": ws, "target": target, "file": out, "tmp": tmp_path_factory.mktemp("more")}


def _logits(ws, run_id):
    from mivis.train import load_classifier
    m, _ = load_classifier(ws, run_id)
    x = load_split(DATA).test.x
    with torch.no_grad():
        return m(x)


def test_export_is_timms_own_layout(world):
    tensors, meta = load_tensors(world["file"])
    assert "head.fc.weight" in tensors and "stem.0.weight" in tensors and "head.norm.weight" in tensors
    assert not any(k.startswith("body.") for k in tensors)
    import timm
    ref = timm.create_model("convnext_atto", pretrained=False, num_classes=6, in_chans=1)
    assert set(ref.state_dict()) == set(tensors)  # timm itself can load it


def test_round_trip_same_accuracy_logits_and_attack(world):
    from mivis.attacks import invert
    ws, target = world["ws"], world["target"]
    rec = import_model(world["file"], ARCH, DATA, mean=[0.5], std=[0.5], workspace=ws)
    assert rec.kind == "target" and rec.status == "done"
    assert rec.metrics["natural_acc"] > 0.5  # it learned, so the comparisons mean something
    assert rec.metrics["natural_acc"] == target.metrics["natural_acc"]
    assert rec.metrics["order_check"] == "ok"
    assert torch.equal(_logits(ws, rec.id), _logits(ws, target.id))
    p = {"iterations": 8, "device": "cpu", "seed": 3}
    a = invert("whitebox", target.id, None, [0, 1, 2], 2, p, workspace=ws)
    b = invert("whitebox", rec.id, None, [0, 1, 2], 2, p, workspace=ws)
    assert torch.equal(a.x, b.x) and torch.equal(a.p_target, b.p_target)


def test_mis_ordered_classes_are_flagged_and_a_given_order_is_applied(world):
    ws = world["ws"]
    names = load_split(DATA).private_names
    rotated = names[1:] + names[:1]  # the model's outputs do not mean these classes
    before = {r.id for r in ws.list()}
    with pytest.raises(ImportFlagged, match="classes probably mis-ordered.*nothing was imported") as e:
        import_model(world["file"], ARCH, DATA, mean=[0.5], std=[0.5], class_order=rotated, workspace=ws)
    assert {r.id for r in ws.list()} == before  # a flagged import leaves no run, finished or not
    assert e.value.metrics["natural_acc"] < 0.35 and e.value.metrics["relabelled_acc"] > 0.7
    assert e.value.metrics["suggested_order"] == names and "--class-order split" in str(e.value)
    bad = import_model(world["file"], ARCH, DATA, mean=[0.5], std=[0.5], class_order=rotated, workspace=ws,
                       keep_flagged=True)  # asked for: stored, and its metrics say so
    assert bad.metrics["order_check"] == "classes probably mis-ordered"
    assert bad.metrics["suggested_order"] == names
    # a file whose outputs really are in another order, imported with that order: same model
    tensors, _ = load_tensors(world["file"])
    perm = [5, 3, 0, 1, 4, 2]  # output j means class names[perm[j]]
    tensors["head.fc.weight"], tensors["head.fc.bias"] = tensors["head.fc.weight"][perm], tensors["head.fc.bias"][perm]
    f = world["tmp"] / "permuted.safetensors"
    save_weights(f, tensors)
    ok = import_model(f, ARCH, DATA, mean=[0.5], std=[0.5], class_order=[names[j] for j in perm], workspace=ws)
    assert ok.metrics["order_check"] == "ok"
    assert torch.equal(_logits(ws, ok.id), _logits(ws, world["target"].id))


def test_refusals_happen_before_any_run_exists(world, tmp_path):
    ws = world["ws"]
    before = len(ws.list())
    pk = tmp_path / "model.safetensors"
    pk.write_bytes(pickle.dumps({"fc.weight": [1.0]}))
    with pytest.raises(WeightsError, match="pickle"):
        import_model(pk, ARCH, DATA, workspace=ws)
    with pytest.raises(WeightsError, match="do not match a timm:resnet10t"):
        import_model(world["file"], "timm:resnet10t", DATA, workspace=ws)
    with pytest.raises(ParamError, match="num_classes: 10 given"):
        import_model(world["file"], ARCH, DATA, num_classes=10, workspace=ws)
    with pytest.raises(ParamError, match="not classes of the data"):
        import_model(world["file"], ARCH, DATA, class_order=["nobody"] + load_split(DATA).private_names[1:],
                     workspace=ws)
    with pytest.raises(ParamError, match="unknown architecture"):
        import_model(world["file"], "timm:not_a_model", DATA, workspace=ws)
    with pytest.raises(WeightsError, match="shape mismatch"):  # a 3-channel reading of a 1-channel model
        import_model(world["file"], ARCH, DATA, in_chans=3, workspace=ws)
    with pytest.raises(ParamError, match="std"):
        import_model(world["file"], ARCH, DATA, mean=[0.5], std=[0.0], workspace=ws)
    assert len(ws.list()) == before


def test_input_normalisation_feeds_the_model_its_own_statistics():
    from mivis.models import model_from_config
    mcfg = {"arch": "resnet18", "arch_params": {}, "num_classes": 3, "in_chans": 3, "img_size": 32, "defenses": {},
            "input_norm": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "in_chans": 3}}
    m = model_from_config(mcfg).eval()
    seen = {}
    m.body.conv1.register_forward_pre_hook(lambda mod, a: seen.update(x=a[0]))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        m(x)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(seen["x"], ((x + 1) / 2 - mean) / std, atol=1e-5)
    assert not any("mivis_in" in k for k in m.state_dict())  # the weights file keeps timm's names only


def test_size_check_measures_and_refuses_what_cannot_fit(monkeypatch):
    from mivis import sizing
    from mivis.models import model_config
    split = load_split(DATA)
    big = model_config("timm:resnet50", split.num_classes, 1, 32)
    est = sizing.estimate(big, len(split.train), 32, "cpu")
    assert est["params"] > 2e7 and est["memory_bytes"] > 4 * 4 * 2e7 and est["epoch_seconds"] > 0
    level, line = sizing.verdict(est)
    assert level == "warn" and "memorise" in line  # 25M parameters for 84 small images
    monkeypatch.setattr(sizing, "_free_memory", lambda dev: 10 * 2**20)
    level, line = sizing.verdict(sizing.estimate(big, len(split.train), 32, "cpu"))
    assert level == "refuse" and "too large" in line
    small = model_config("timm:resnet10t", split.num_classes, 1, 32)
    monkeypatch.undo()
    assert sizing.verdict(sizing.estimate(small, 10_000, 32, "cpu"))[0] in ("ok", "warn")


def test_cli_import_prints_accuracy_and_one_line_refusals(world, tmp_path, capsys):
    from mivis.cli import main
    args = ["--workspace", str(world["ws"].path), "import-model", str(world["file"]), "--arch", ARCH,
            "--norm-mean", "0.5", "--norm-std", "0.5", "--dataset", "synthetic", "--n-private", "6",
            "--image-size", "32", "--test-per-identity", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "retraining it here" in out
    pk = tmp_path / "m.safetensors"
    pk.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    assert main(args[:3] + [str(pk)] + args[4:]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "zip" in err and len(err.splitlines()) == 1


def test_a_model_trained_outside_mivis_with_its_own_normalisation(world, tmp_path):
    """A plain timm + torch loop (ImageNet mean/std, RGB), saved with safetensors, then imported: mivis
    measures the held-out accuracy the outside loop measured; the wrong normalisation changes the outputs."""
    import timm
    import torch.nn.functional as F
    from safetensors.torch import save_file
    rgb = {**DATA, "channels": 3}
    split = load_split(rgb)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

    def norm(x):
        return ((x + 1) / 2 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.manual_seed(0)
    m = timm.create_model("convnext_atto", pretrained=False, num_classes=split.num_classes, in_chans=3)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    flips = torch.Generator().manual_seed(1)
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(split.train), generator=torch.Generator().manual_seed(0)).split(8):
            x = split.train.x[idx]
            x = torch.where(torch.rand(len(x), 1, 1, 1, generator=flips) < 0.5, x.flip(-1), x)
            loss = F.cross_entropy(m(norm(x)), split.train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        outside_logits = m(norm(split.test.x))
    outside = (outside_logits.argmax(1) == split.test.y).float().mean().item()
    assert outside > 0.5  # it learned, so equal accuracies mean something
    f = tmp_path / "outside.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(f))
    rec = import_model(f, "convnext_atto", DATA, in_chans=3, mean=mean, std=std, workspace=world["ws"])
    assert rec.metrics["natural_acc"] == pytest.approx(outside, abs=1e-6) and rec.metrics["order_check"] == "ok"
    assert torch.allclose(_logits_of(world["ws"], rec.id, rgb), outside_logits, atol=1e-4)
    plain = import_model(f, "convnext_atto", DATA, in_chans=3, mean=[0.5] * 3, std=[0.5] * 3, workspace=world["ws"])
    assert not torch.allclose(_logits_of(world["ws"], plain.id, rgb), outside_logits, atol=1e-2)


def _logits_of(ws, run_id, data):
    from mivis.train import load_classifier
    m, _ = load_classifier(ws, run_id)
    with torch.no_grad():
        return m(load_split(data).test.x)


def test_skip_modified_retrain_of_a_timm_architecture(world):
    """The comparison the README describes: the same timm architecture retrained here with its last stage's
    skips removed is a normal run that loads back with the skips it was trained with."""
    from mivis.surgery import describe
    from mivis.train import load_classifier, train_run
    rec = train_run("target", {"arch": ARCH, "device": "cpu", "batch_size": 8, "epochs": 1, "augment": "none"},
                    DATA, defenses={"skips": {"scales": [1, 1, 1, 0]}}, workspace=world["ws"])
    assert rec.config["model"]["defenses"]["skips"]["scales"] == [1.0, 1.0, 1.0, 0.0]
    m, _ = load_classifier(world["ws"], rec.id)
    assert [s["scale"] for s in describe(m)["stages"]] == [1.0, 1.0, 1.0, 0.0]
    # ConvNeXt's 1e-6 layer scale would leave the skip-less stage dead: it started at 1 and trained from there
    assert float(m.body.stages[3].blocks[0].gamma.abs().mean()) > 0.1


def test_layers_analysis_runs_on_an_imported_model(world):
    """Fisher information per layer group and per-stage gradient flow on an imported (foreign-normalised) run."""
    from mivis.analysis import layers_run
    from mivis.analysis.gradflow import gradient_flow
    import torch.nn.functional as F

    from mivis.train import load_classifier
    ws = world["ws"]
    rec = import_model(world["file"], ARCH, DATA, mean=[0.45], std=[0.25], workspace=ws)
    lay = layers_run(rec.id, None, {"snapshots": 0, "fi_samples": 6, "device": "cpu"}, workspace=ws)
    assert lay.status == "done"
    fi = lay.read_json("layers.json")
    assert len(fi["classification"]) == len(fi["layers"]) > 10
    m, _ = load_classifier(ws, rec.id)
    x, y = load_split(DATA).train.x[:4], load_split(DATA).train.y[:4]
    flow = gradient_flow(m, lambda: F.cross_entropy(m(x), y))
    assert flow["family"] == "convnext" and len(flow["stages"]) == 4
    assert all(r["grad_norm"] is not None and r["grad_norm"] > 0 for r in flow["stages"])


def test_train_and_size_check_cli_refuse_a_model_that_cannot_fit(tmp_path, monkeypatch, capsys):
    from mivis import sizing
    from mivis.cli import main
    from mivis.runs import Workspace
    data = ["--dataset", "synthetic", "--n-private", "6", "--image-size", "32", "--test-per-identity", "2"]
    monkeypatch.setattr(sizing, "_free_memory", lambda dev: 10 * 2**20)  # a 10 MB machine
    assert main(["size-check", "--arch", "timm:resnet10t", "--device", "cpu"] + data) == 2
    assert "too large" in capsys.readouterr().err
    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "train", "--arch", "timm:resnet10t", "--epochs", "1", "--device", "cpu"]
                + data) == 2
    err = capsys.readouterr().err
    assert "size check (refuse)" in err and "too large to train here" in err
    assert Workspace(ws).list() == []  # refused before any run exists


def test_a_model_with_unknown_blocks_is_imported_attacked_and_analysed(world, tmp_path):
    """MLP-Mixer blocks have no skip rule in mivis: the run still imports, is attacked and has a gradient flow;
    its description names the blocks whose skips mivis cannot control."""
    import timm
    import torch.nn.functional as F
    from safetensors.torch import save_file

    from mivis.analysis.gradflow import gradient_flow
    from mivis.attacks import invert
    from mivis.surgery import describe
    from mivis.train import load_classifier
    torch.manual_seed(0)
    m = timm.create_model("mixer_s16_224", pretrained=False, num_classes=6, in_chans=1, img_size=32)
    f = tmp_path / "mixer.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(f))
    ws = world["ws"]
    rec = import_model(f, "timm:mixer_s16_224", DATA, mean=[0.5], std=[0.5], workspace=ws,
                       keep_flagged=True)  # random weights: near chance, stored on request
    model, _ = load_classifier(ws, rec.id)
    d = describe(model)
    assert d["family"] == "generic" and d["uncontrolled"][0]["type"] == "MixerBlock"
    res = invert("whitebox", rec.id, None, [0, 1], 1, {"iterations": 3, "device": "cpu"}, workspace=ws)
    assert res.x.shape == (2, 1, 32, 32) and torch.isfinite(res.x).all()
    x, y = load_split(DATA).train.x[:2], load_split(DATA).train.y[:2]
    flow = gradient_flow(model, lambda: F.cross_entropy(model(x), y))
    assert len(flow["stages"]) == len(d["stages"]) and all(r["skip_share"] is None for r in flow["stages"])
