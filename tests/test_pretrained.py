"""Targets starting from a local timm checkpoint (ImageNet-style safetensors): loaded without any
download, adapted to grayscale, refused in one line when the file is for another architecture."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from mivis.params import ParamError
from mivis.weights import WeightsError


def _timm_checkpoint(path, timm_name: str, seed: int = 0, **kw):
    """What a user has on disk: timm's full model (1000 classes, RGB), saved as safetensors."""
    import timm
    torch.manual_seed(seed)
    m = timm.create_model(timm_name, pretrained=False, **kw)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return m.state_dict()


def test_resnet_body_loaded_head_dropped_stem_summed(tmp_path):
    from mivis.models import build_classifier
    from mivis.pretrained import load_pretrained_body
    src = _timm_checkpoint(tmp_path / "r18.safetensors", "resnet18")
    model = build_classifier("resnet18", 7, 1, 32)
    rep = load_pretrained_body(model, tmp_path / "r18.safetensors", "resnet18")
    own = model.body.state_dict()
    assert torch.equal(own["layer3.1.conv2.weight"], src["layer3.1.conv2.weight"])
    assert torch.equal(own["bn1.running_var"], src["bn1.running_var"])
    assert torch.allclose(own["conv1.weight"], src["conv1.weight"].sum(1, keepdim=True))
    assert rep["head_dropped"] == 2 and rep["adapted"] == ["conv1.weight"]
    assert model.head.weight.shape == (7, 512)  # a new head for the 7 private classes


def test_skip_surgery_leaves_removed_projection_unused(tmp_path):
    import mivis.defenses  # noqa: F401  (the defenses register themselves with models: models never imports them)
    from mivis.models import model_config, model_from_config
    from mivis.pretrained import load_pretrained_body
    src = _timm_checkpoint(tmp_path / "r18.safetensors", "resnet18")
    model = model_from_config(model_config("resnet18", 5, 3, 32, None, {"skips": {"scales": [1, 1, 1, 0]}}))
    rep = load_pretrained_body(model, tmp_path / "r18.safetensors", "resnet18")
    assert rep["unused_removed_by_surgery"] > 0
    assert torch.equal(model.body.state_dict()["conv1.weight"], src["conv1.weight"])


def test_wrong_architecture_refused_naming_it(tmp_path):
    from mivis.models import build_classifier
    from mivis.pretrained import load_pretrained_body
    _timm_checkpoint(tmp_path / "r34.safetensors", "resnet34")
    model = build_classifier("resnet18", 5, 1, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match="not a resnet18 checkpoint.*looks like a resnet34"):
        load_pretrained_body(model, tmp_path / "r34.safetensors", "resnet18")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # nothing half-loaded


def test_pickle_checkpoint_refused(tmp_path):
    from mivis.models import build_classifier
    from mivis.pretrained import load_pretrained_body
    import timm
    bad = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), bad)
    with pytest.raises(WeightsError, match="never unpickles"):
        load_pretrained_body(build_classifier("resnet18", 5, 1, 32), bad, "resnet18")


def test_train_run_from_checkpoint_records_its_hash(ws, tiny_data, tiny_train, tmp_path):
    from mivis.train import train_run, training_config
    path = tmp_path / "r18.safetensors"
    _timm_checkpoint(path, "resnet18")
    cfg = {**tiny_train, "epochs": 1, "init_weights": str(path)}
    rec = train_run("target", cfg, tiny_data, workspace=ws, defenses={"tldmi": {"freeze": 15}})
    assert rec.status == "done" and len(rec.config["model"]["init_weights_sha256"]) == 64
    assert rec.metrics["trainable_params"] < rec.metrics["params"]  # TL-DMI accepted the checkpoint as start
    # the same file -> the same config (a sweep reuses the run); another file -> another config
    assert ws.find("target", training_config("target", cfg, tiny_data, defenses={"tldmi": {"freeze": 15}},
                                             workspace=ws)).id == rec.id
    other = tmp_path / "other.safetensors"
    _timm_checkpoint(other, "resnet18", seed=1)
    assert training_config("target", {**cfg, "init_weights": str(other)}, tiny_data)["model"][
        "init_weights_sha256"] != rec.config["model"]["init_weights_sha256"]


def test_bad_settings_refused_before_a_run(ws, tiny_data, tiny_train, tmp_path):
    from mivis.train import train_run
    with pytest.raises(ParamError, match="does not exist"):
        train_run("target", {**tiny_train, "init_weights": str(tmp_path / "nope.safetensors")}, tiny_data,
                  workspace=ws)
    _timm_checkpoint(tmp_path / "vgg.safetensors", "vgg11_bn")
    with pytest.raises(WeightsError, match="looks like a vgg11"):
        train_run("target", {**tiny_train, "init_weights": str(tmp_path / "vgg.safetensors")}, tiny_data,
                  workspace=ws)
    assert ws.list() == []
