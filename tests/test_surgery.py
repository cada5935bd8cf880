"""Skip surgery on real timm models (CPU, 32x32, random weights with non-trivial BatchNorm)."""
import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mivis.models import build_classifier
from mivis.params import ParamError
from mivis.surgery import (check_scales, describe, layer_groups, repvgg_equivalence, rolss_scales,
                           set_stage_scales, stage_scales, toggleable)

X = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))


def _random_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BN (timm zero-initialises ResNet's last BN, which would hide the residual branch)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


def _model(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return _random_bn(build_classifier(arch, 5, 1, 32))


def _block_io(model: nn.Module, block: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    seen = {}
    h = block.register_forward_hook(lambda m, i, o: seen.update(x=i[0].detach(), y=o.detach()))
    with torch.no_grad():
        model(X)
    h.remove()
    return seen["x"], seen["y"]


def _resnet_branch(b: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """F(x) written out independently of the code under test."""
    if hasattr(b, "bn3"):
        h = F.relu(b.bn1(b.conv1(x)))
        h = F.relu(b.bn2(b.conv2(h)))
        return b.bn3(b.conv3(h))
    return b.bn2(b.conv2(F.relu(b.bn1(b.conv1(x)))))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "densenet121", "efficientnet_b0", "mobilenetv2",
                                  "vit_tiny"])
def test_all_scales_one_equal_the_unmodified_timm_model(arch):
    ref = _model(arch)
    mod = copy.deepcopy(ref)
    set_stage_scales(mod, [1.0] * len(describe(mod)["stages"]))
    scaled = [m for m in mod.modules() if type(m).__name__.startswith("Scaled")]
    assert scaled, "the scaled forward must be what runs, or this test proves nothing"
    assert mod.state_dict().keys() == ref.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(mod(X), ref(X))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_stage_at_zero_computes_relu_of_branch_and_other_stages_keep_skips(arch):
    m = _model(arch)
    n_proj = sum(p.numel() for p in m.body.layer4[0].downsample.parameters())
    before = sum(p.numel() for p in m.parameters())
    set_stage_scales(m, [1, 1, 1, 0], reinit_removed=False)
    assert sum(p.numel() for p in m.parameters()) == before - n_proj  # the projection is gone
    for b in m.body.layer4:  # every block of the stage, the first (projection) one included
        x, y = _block_io(m, b)
        with torch.no_grad():
            assert torch.equal(y, F.relu(_resnet_branch(b, x)))
    for b in m.body.layer3:  # all of stage 3 keeps its skips (the public RoLSS code dropped its tail)
        x, y = _block_io(m, b)
        with torch.no_grad():
            sc = b.downsample(x) if b.downsample is not None else x
            assert torch.equal(y, F.relu(_resnet_branch(b, x) + sc))
            assert not torch.allclose(y, F.relu(_resnet_branch(b, x)))


def test_resnet_ssf_scales_the_projection_shortcut():
    m = _model("resnet18")
    set_stage_scales(m, [1, 1, 1, 0.2])
    assert m.body.layer4[0].downsample is not None
    for b in m.body.layer4:
        x, y = _block_io(m, b)
        with torch.no_grad():
            sc = b.downsample(x) if b.downsample is not None else x
            assert torch.equal(y, F.relu(_resnet_branch(b, x) + 0.2 * sc))
    assert stage_scales(m) == [1.0, 1.0, 1.0, 0.2]


def _stem_grad(model: nn.Module) -> float:
    model.train()
    model.zero_grad()
    F.cross_entropy(model(torch.randn(4, 1, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    return model.body.conv1.weight.grad.abs().sum().item()


def test_zero_init_last_bn_is_fixed_for_removed_skips_and_scaled_ones_train():
    torch.manual_seed(0)
    fresh = build_classifier("resnet18", 5, 1, 32)
    dead, fixed, ssf = fresh, copy.deepcopy(fresh), copy.deepcopy(fresh)
    set_stage_scales(dead, [1, 1, 1, 0], reinit_removed=False)
    assert _stem_grad(dead) == 0.0  # the pitfall: timm's zero-initialised BN blocks every gradient
    set_stage_scales(fixed, [1, 1, 1, 0])
    assert all(b.bn2.weight.eq(1).all() for b in fixed.body.layer4)
    assert fixed.body.layer3[0].bn2.weight.eq(0).all()  # blocks that keep their skip are untouched
    assert _stem_grad(fixed) > 0
    set_stage_scales(ssf, [1, 1, 1, 0.2])
    assert _stem_grad(ssf) > 0 and ssf.body.layer4[1].bn2.weight.grad.abs().sum() > 0  # leaves zero


def _dense_widths(c0, k, layers, s):
    keep = lambda c: int(math.floor(s * c + 0.5))  # noqa: E731
    ins = [c0] + [keep(c0) + (i - 2) * keep(k) + k for i in range(2, layers + 1)]
    return ins, keep(c0) + (layers - 1) * keep(k) + k


@pytest.mark.parametrize("arch,k,init,config", [("densenet121", 32, 64, (6, 12, 24, 16)),
                                                 ("densenet161", 48, 96, (6, 12, 36, 24)),
                                                 ("densenet169", 32, 64, (6, 12, 32, 32)),
                                                 ("densenet201", 32, 64, (6, 12, 48, 32))])
def test_densenet_widths_follow_the_formula(arch, k, init, config):
    with torch.device("meta"):
        m = build_classifier(arch, 5, 1, 32)
    scales = [1.0, 0.5, 0.01, 0.0]
    set_stage_scales(m, scales)
    feats, c = m.body.features, init
    for i, (n, s) in enumerate(zip(config, scales)):
        ins, out = _dense_widths(c, k, n, s)
        block = getattr(feats, f"denseblock{i + 1}")
        assert [layer.conv1.in_channels for layer in block.values()] == ins
        if i < 3:
            t = getattr(feats, f"transition{i + 1}")
            assert (t.conv.in_channels, t.conv.out_channels) == (out, out // 2)
            c = out // 2
    assert out == k and feats.norm5.num_features == k and m.head.in_features == k == m.num_features
    assert describe(m)["stages"][3]["out_channels"] == k


def test_densenet_ssf_keeps_channels_and_removal_chains_layers():
    torch.manual_seed(0)
    m = build_classifier("densenet121", 5, 1, 32).eval()
    set_stage_scales(m, [1, 1, 0.01, 0])
    # stage 3 input is 256 wide: keep(0.01, 256) = 3, keep(0.01, 32) = 0, plus the last layer's 32
    assert describe(m)["stages"][2]["out_channels"] == 3 + 23 * 0 + 32
    ios = []
    hooks = [layer.register_forward_hook(lambda mod, i, o: ios.append((i[0], o)))
             for layer in m.body.features.denseblock4.values()]
    with torch.no_grad():
        out = m.body.features(X)
    for h in hooks:
        h.remove()
    for (inp, _), (_, prev_out) in zip(ios[1:], ios[:-1]):  # each layer sees only the previous output
        assert len(inp) == 1 and torch.equal(inp[0], prev_out)
    assert out.shape[1] == 32 and m(X).shape == (2, 5)


@pytest.mark.parametrize("arch", ["efficientnet_b0", "mobilenetv2"])
def test_inverted_residuals_scale_only_real_skips(arch):
    m = _model(arch)
    d = describe(m)
    truth = [[b.has_skip for b in st] for st in m.body.blocks]
    assert [[b["skip"] for b in st["blocks"]] for st in d["stages"]] == truth
    assert d["toggleable"] == [i for i, t in enumerate(truth) if any(t)] == [1, 2, 3, 4, 5]
    with pytest.raises(ParamError, match="stages with skips: 2, 3, 4, 5, 6"):
        check_scales(m, [0, 1, 1, 1, 1, 1, 1])  # stage 1 has no skip: a toggle would do nothing
    plain = copy.deepcopy(m.body.blocks[5])
    set_stage_scales(m, [1, 1, 1, 1, 1, 0.5, 1])
    for j, b in enumerate(m.body.blocks[5]):
        x, y = _block_io(m, b)
        ref = plain[j]
        ref.has_skip = False  # timm's own forward without the skip: F(x)
        with torch.no_grad():
            fx = ref(x)
            assert torch.equal(y, fx + 0.5 * x) if truth[5][j] else torch.equal(y, fx)
    assert stage_scales(m)[0] is None and stage_scales(m)[5] == 0.5


@pytest.mark.parametrize("mode", ["attn", "mlp", "both"])
def test_vit_scales_the_residual_of_the_chosen_branch(mode):
    m = _model("vit_tiny")
    set_stage_scales(m, [1, 1, 1, 0], mode=mode)
    assert describe(m, mode)["stages"][3]["blocks"][0]["name"] == "blocks.9"
    b = m.body.blocks[10]
    x, y = _block_io(m, b)
    sa, sm = (0.0 if mode in ("attn", "both") else 1.0), (0.0 if mode in ("mlp", "both") else 1.0)
    with torch.no_grad():
        h = sa * x + b.attn(b.norm1(x))
        assert torch.allclose(y, sm * h + b.mlp(b.norm2(h)), atol=1e-6, rtol=0)
    x, y = _block_io(m, m.body.blocks[8])  # group 3 untouched
    with torch.no_grad():
        h = x + m.body.blocks[8].attn(m.body.blocks[8].norm1(x))
        assert torch.allclose(y, h + m.body.blocks[8].mlp(m.body.blocks[8].norm2(h)), atol=1e-6, rtol=0)


def test_resnet_family_stage_maps_and_refusals():
    for arch, blocks in [("resnet18", [2, 2, 2, 2]), ("resnet34", [3, 4, 6, 3]), ("resnet50", [3, 4, 6, 3]),
                         ("resnet101", [3, 4, 23, 3]), ("resnet152", [3, 8, 36, 3])]:
        with torch.device("meta"):
            m = build_classifier(arch, 5, 1, 32)
        set_stage_scales(m, rolss_scales(m))
        d = describe(m)
        assert [len(s["blocks"]) for s in d["stages"]] == blocks and stage_scales(m) == [1, 1, 1, 0]
        assert sum(s["params"] for s in d["stages"]) < d["params"]
    with pytest.raises(ParamError, match=r"4 stages .*give 4 numbers in \[0, 1\]"):
        check_scales(m, [1, 0])
    with pytest.raises(ParamError, match=r"outside the allowed range \[0, 1\]"):
        check_scales(m, [1, 1, 1, 1.5])
    for arch in ("vgg16", "repvgg_a0"):
        with torch.device("meta"):
            m = build_classifier(arch, 5, 1, 32)
        assert toggleable(m) == []
        with pytest.raises(ParamError, match="supports the resnet, densenet"):
            check_scales(m, [1] * len(describe(m)["stages"]))


def test_describe_is_json_and_tracks_scales():
    m = _model("resnet18")
    set_stage_scales(m, [1, 1, 0.5, 0])
    d = json.loads(json.dumps(describe(m)))
    s3, s4 = d["stages"][2], d["stages"][3]
    assert (s3["scale"], s4["scale"]) == (0.5, 0.0) and s3["toggleable"] and s4["blocks"][0]["skip"]
    assert s4["params"] == sum(p.numel() for p in m.body.layer4.parameters())
    assert d["family"] == "resnet" and d["skip_kind"] == "additive"


def test_repvgg_fused_model_has_the_same_outputs_and_input_gradients():
    r = repvgg_equivalence()
    assert r["multi_branch_blocks_before"] > 0 and r["multi_branch_blocks_after"] == 0
    assert r["params_after"] < r["params_before"]
    assert r["max_abs_output_diff"] <= 1e-5 * r["output_max_abs"]
    assert r["max_abs_input_grad_diff"] <= 1e-5 * r["input_grad_max_abs"]
    assert r["max_abs_output_diff"] > 0 or r["max_abs_input_grad_diff"] > 0  # really two different graphs


def test_layer_groups_pair_convs_with_their_norms_and_match_paper_counts():
    with torch.device("meta"):
        r18 = build_classifier("resnet18", 1000, 3, 224)
        vgg = build_classifier("vgg16", 1000, 3, 224)
    g = layer_groups(r18)
    assert g[0]["modules"] == ["body.conv1", "body.bn1"] and g[-1]["modules"] == ["head"]
    first4 = next(x["index"] for x in g if x["modules"][0] == "body.layer4.0.conv1")
    trained = sum(x["n_params"] for x in g[first4:])
    assert trained == 8_393_728 + 513_000  # layer4 + head: the paper's ~8.9M
    gv = layer_groups(vgg)
    assert all(len(x["modules"]) == 2 for x in gv[:13])  # 13 conv+BN layers, then the head
    conv_1_8 = sum(x["n_params"] for x in gv[:8])
    assert 2.9e6 < conv_1_8 < 2.95e6  # frozen part of the paper's VGG16 (16.78M - 13.86M = 2.92M)
