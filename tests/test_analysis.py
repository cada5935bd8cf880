import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mivis.analysis import attribute, concentration, fisher_per_layer, gradient_flow
from mivis.models import build_classifier
from mivis.surgery import set_stage_scales
from mivis.surgery.layers import layer_groups


def _layers(model):
    params = dict(model.named_parameters())
    return [(g["name"], [params[p] for p in g["params"]]) for g in layer_groups(model)]


class WithDeadLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(8, 3)
        self.unused = nn.Linear(8, 3)  # never called: receives no gradient

    def forward(self, x):
        return self.used(x)


def test_fisher_is_zero_without_gradient_and_normalised_sums_to_one():
    torch.manual_seed(0)
    m = WithDeadLayer()
    rows = fisher_per_layer(m, _layers(m), torch.randn(10, 8), torch.randint(0, 3, (10,)))
    by = {r["layer"]: r for r in rows}
    assert by["unused"]["fisher"] == 0.0 and by["used"]["fisher"] > 0
    assert math.isclose(sum(r["normalised"] for r in rows), 1.0, rel_tol=1e-9)


def test_fisher_matches_a_hand_computed_value():
    m = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([0])
    rows = fisher_per_layer(m, [("w", [m.weight])], x, y)
    p = torch.softmax(torch.tensor([1.0, 2.0]), 0)
    g = torch.outer(p - torch.tensor([1.0, 0.0]), x[0])  # dCE/dW
    assert rows[0]["fisher"] == pytest.approx(float(g.pow(2).mean()), rel=1e-6)


def test_fisher_on_resnet_sums_to_one_and_concentration_in_range():
    torch.manual_seed(0)
    m = build_classifier("resnet18", 4, 1, 32).eval()
    rows = fisher_per_layer(m, _layers(m), torch.randn(4, 1, 32, 32), torch.arange(4), batch_size=2)
    assert math.isclose(sum(r["normalised"] for r in rows), 1.0, rel_tol=1e-9)
    assert 0 < concentration(rows) <= 1


def _live_resnet(scales):
    torch.manual_seed(0)
    m = build_classifier("resnet18", 5, 1, 32)
    for mod in m.modules():  # undo zero-init so residual branches pass gradient
        if isinstance(mod, nn.BatchNorm2d):
            nn.init.ones_(mod.weight)
    return set_stage_scales(m, scales).eval()


def test_gradient_flow_has_no_skip_share_in_a_removed_stage():
    x = torch.randn(3, 1, 32, 32, requires_grad=True)
    y = torch.tensor([0, 1, 2])
    full = _live_resnet([1, 1, 1, 1])
    r = gradient_flow(full, lambda: F.cross_entropy(full(x), y), latent=x)
    assert all(0 < s["skip_share"] < 1 for s in r["stages"]) and r["latent_grad_norm"] > 0
    cut = _live_resnet([1, 1, 1, 0])
    r = gradient_flow(cut, lambda: F.cross_entropy(cut(x), y), latent=x)
    assert r["stages"][3]["skip_share"] == 0.0 and r["stages"][2]["skip_share"] > 0
    ssf = _live_resnet([1, 1, 1, 0.2])
    r_ssf = gradient_flow(ssf, lambda: F.cross_entropy(ssf(x), y), latent=x)
    r_full = gradient_flow(full, lambda: F.cross_entropy(full(x), y), latent=x)
    assert 0 < r_ssf["stages"][3]["skip_share"] < r_full["stages"][3]["skip_share"]


def test_gradient_flow_path_split_is_exact_for_an_identity_block():
    # total gradient at a block input = skip path + residual path: check the skip part by hand
    m = _live_resnet([1, 1, 1, 1])
    block = m.body.layer1[1]  # identity shortcut
    x = torch.randn(2, 64, 8, 8, requires_grad=True)
    from mivis.analysis.gradflow import _BlockProbe, _no_inplace
    probe = _BlockProbe("resnet", block)
    with _no_inplace(m):
        block(x).pow(2).sum().backward()
    probe.remove()
    assert torch.allclose(probe.skip_gradient(), probe.g_junction)
    assert torch.allclose(probe.g_x, x.grad)


@pytest.mark.parametrize("method", ["integrated_gradients", "grad_cam"])
def test_attribution_maps_have_input_shape_and_are_finite(method):
    m = _live_resnet([1, 1, 1, 1])
    maps = attribute(m, torch.rand(2, 1, 32, 32) * 2 - 1, 1, method, steps=8)
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all()
    assert np.abs(maps).sum() > 0


def test_layers_run_end_to_end_with_attack_snapshots(ws, tiny_data, tiny_train, trained_target):
    """Classification and MI Fisher information plus gradient flow over a stored attack's iterations."""
    import json
    from mivis.analysis import layers_run
    from mivis.attacks import attack_run
    from mivis.train import train_run
    ev = train_run("eval", {**tiny_train, "arch": "vgg11", "epochs": 1}, tiny_data, workspace=ws)
    atk = attack_run("whitebox", trained_target.id, None, identities=[0, 1], restarts=2,
                     params={"iterations": 4, "device": "cpu"}, eval_run=ev.id, workspace=ws, n_boot=50)
    rec = layers_run(trained_target.id, atk.id, {"snapshots": 2, "mi_samples": 4, "fi_samples": 6,
                                                 "device": "cpu"}, workspace=ws)
    assert rec.kind == "analysis" and set(rec.parents) == {trained_target.id, atk.id}
    data = json.loads(rec.file("layers.json").read_text())
    n = len(data["layers"])
    for rows in (data["classification"], data["mi_final"]):
        assert len(rows) == n and math.isclose(sum(r["normalised"] for r in rows), 1.0, rel_tol=1e-9)
    assert [s["iteration"] for s in data["mi_snapshots"]] == [1, 4]
    assert len(data["gradflow"]) == 2 and data["gradflow"][0]["latent_grad_norm"] > 0
    assert all(s["grad_norm"] > 0 for s in data["gradflow"][0]["stages"])
    assert 0 <= rec.metrics["fi_mi_first_half"] <= 1
    # the snapshots came from what the attack stored while it ran (no replay); a replay of the same attack
    # (an attack run from before snapshots were stored) gives the same iterations and Fisher information
    assert data["snapshot_source"] == "stored by the attack run"
    (atk.dir / "snapshots.safetensors").unlink()
    again = layers_run(trained_target.id, atk.id, {"snapshots": 2, "mi_samples": 4, "fi_samples": 6,
                                                   "device": "cpu"}, workspace=ws)
    replayed = json.loads(again.file("layers.json").read_text())
    assert "snapshot_source" not in replayed
    assert [s["iteration"] for s in replayed["mi_snapshots"]] == [1, 4]
    for a, b in zip(data["mi_snapshots"], replayed["mi_snapshots"]):
        got = np.array([r["normalised"] for r in a["rows"]])
        want = np.array([r["normalised"] for r in b["rows"]])
        assert np.allclose(got, want, atol=2e-3), (got, want)  # stored images are float16

