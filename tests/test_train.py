import pytest
import torch

from mivis.params import ParamError
from mivis.progress import Cancelled, Reporter
from mivis.train import train_run


def test_progress_events_and_determinism(ws, tiny_data, tiny_train):
    events = []
    a = train_run("target", tiny_train, tiny_data, workspace=ws, reporter=Reporter(events.append))
    steps = [e for e in events if e["phase"] == "train"]
    epochs = [e for e in events if e["phase"] == "epoch"]
    assert steps and {"epoch", "step", "loss"} <= set(steps[0]) and len(epochs) == tiny_train["epochs"]
    assert "test_acc" in epochs[-1]
    b = train_run("target", tiny_train, tiny_data, workspace=ws)
    from mivis.weights import load_tensors
    wa, wb = load_tensors(a.dir / "weights.safetensors")[0], load_tensors(b.dir / "weights.safetensors")[0]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # same seed, same weights


def test_cancel_marks_run_cancelled(ws, tiny_data, tiny_train):
    rep = Reporter(lambda e: rep.cancel.set() if e.get("step") == 2 else None)
    with pytest.raises(Cancelled):
        train_run("target", {**tiny_train, "epochs": 50}, tiny_data, workspace=ws, reporter=rep)
    (run,) = ws.list()
    assert run.status == "cancelled" and not (run.dir / "weights.safetensors").exists()


def test_roles(ws, tiny_data, tiny_train):
    pub = train_run("public", tiny_train, tiny_data, workspace=ws)
    assert pub.config["model"]["num_classes"] == 10  # 16 synthetic identities - 6 private
    tgt = train_run("target", {**tiny_train, "init_run": pub.id}, tiny_data, workspace=ws)
    assert tgt.parents == [pub.id] and tgt.config["model"]["num_classes"] == 6
    ev = train_run("eval", {**tiny_train, "arch": "mobilenetv2"}, tiny_data, workspace=ws)
    assert ev.kind == "eval"


def test_refusals_happen_before_any_run_exists(ws, tiny_data, tiny_train):
    with pytest.raises(ParamError, match="resnet18"):
        train_run("target", {**tiny_train, "arch": "alexnet"}, tiny_data, workspace=ws)
    with pytest.raises(ParamError, match=r"\[1, 1000\]"):
        train_run("target", {**tiny_train, "epochs": 0}, tiny_data, workspace=ws)
    with pytest.raises(ParamError, match="not one of"):
        train_run("boss", tiny_train, tiny_data, workspace=ws)
    assert ws.list() == []


@pytest.mark.parametrize("arch", ["resnet18", "mobilenetv2", "vit_tiny", "vgg11", "densenet121"])
def test_architectures_build_and_step(arch):
    from mivis.models import build_classifier
    m = build_classifier(arch, 5, 1, 32)
    out = m(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 5) and m.embed(torch.randn(2, 1, 32, 32)).shape == (2, m.num_features)


@pytest.mark.slow
def test_orl_resnet18_target_reaches_90_percent(ws):
    rec = train_run("target", {"epochs": 30, "device": "cpu"}, {}, workspace=ws)
    assert rec.metrics["natural_acc"] >= 0.9
