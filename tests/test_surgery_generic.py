"""Skip surgery on timm families beyond the curated list (tiny configurations, CPU, 32x32).

For each family: all scales 1 give exactly timm's own forward; a stage at scale 0 gives, for each of
its blocks, the block's residual branch written out here by hand (no shortcut); a block type mivis
has no rule for is reported, not silently "scaled".
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mivis.models import ARCHITECTURES, Classifier, build_classifier
from mivis.params import ParamError
from mivis.surgery import check_scales, describe, layer_groups, set_stage_scales, stages

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _randomise(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BN statistics and layer scales (timm's zero-init / 1e-6 init would hide the branch)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            gamma = getattr(m, "gamma", None)
            if isinstance(gamma, nn.Parameter):
                gamma.copy_(torch.rand(gamma.shape, generator=g) + 0.5)
    return model.eval()


def _timm(name: str, **kw) -> Classifier:
    import timm
    torch.manual_seed(0)
    body = timm.create_model(name, pretrained=False, num_classes=0, **kw)
    width = getattr(body, "head_hidden_size", None) or body.num_features
    return _randomise(Classifier(body, width, 5))


def _block_io(model, block):
    seen = {}
    h = block.register_forward_hook(lambda m, i, o: seen.update(x=i[0].detach(), y=o.detach()))
    with torch.no_grad():
        model(X)
    h.remove()
    return seen["x"], seen["y"]


# hand-written residual branches, F(x), from timm's block definitions (eval mode: drop-path is identity)
def _convnext(b, x):
    h = b.conv_dw(x)
    if b.use_conv_mlp:  # convnext_atto: LayerNorm2d + 1x1-conv MLP on NCHW
        h = b.mlp(b.norm(h))
    else:
        h = b.mlp(b.norm(h.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
    return h * b.gamma.reshape(1, -1, 1, 1)


def _regnet(b, x):
    return b.act3(b.conv3(b.se(b.conv2(b.conv1(x)))))


def _swin(b, x):
    B, H, W, C = x.shape
    h = b._attn(b.norm1(x)).reshape(B, -1, C)  # window attention (timm's partition / shift / mask)
    return b.mlp(b.norm2(h)).reshape(B, H, W, C)


def _edge_residual(b, x):  # EfficientNetV2's fused block
    return b.bn2(b.conv_pwl(b.se(b.aa(b.bn1(b.conv_exp(x))))))


def _inverted_residual(b, x):  # MobileNetV2/V3, EfficientNet
    h = b.aa(b.bn2(b.conv_dw(b.bn1(b.conv_pw(x)))))
    return b.bn3(b.conv_pwl(b.se(h)))


def _resnet_se(b, x):  # SE-ResNet / ResNet-D BasicBlock: act(se(bn2(conv2(act(bn1(conv1 x))))))
    h = F.relu(b.bn1(b.conv1(x)))
    h = b.bn2(b.conv2(h))
    return F.relu(b.se(h) if b.se is not None else h)


def _resnext_bottleneck(b, x):  # timm ResNet Bottleneck with groups
    h = F.relu(b.bn1(b.conv1(x)))
    h = F.relu(b.bn2(b.conv2(h)))
    return F.relu(b.bn3(b.conv3(h)))


def _byob_bottleneck(b, x):  # resnext26ts (ByobNet BottleneckBlock)
    h = b.conv2b_kxk(b.conv2_kxk(b.conv1_1x1(x)))
    return b.act(b.attn_last(b.conv3_1x1(b.attn(h))))


FAMILIES = {
    "convnext": (("convnext_atto", dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32))), "ConvNeXtBlock", _convnext),
    "regnet": (("regnety_002", {}), "Bottleneck", _regnet),  # RegNetY: with squeeze-excitation
    "swin": (("swin_tiny_patch4_window7_224",
              dict(img_size=32, window_size=4, depths=(1, 1, 2, 1), embed_dim=16, num_heads=(1, 1, 2, 2))),
             "SwinTransformerBlock", _swin),
    "efficientnetv2": (("efficientnetv2_rw_t", {}), "EdgeResidual", _edge_residual),
    "mobilenetv3": (("mobilenetv3_small_050", {}), "InvertedResidual", _inverted_residual),
    "resnet_d": (("resnet18d", dict(layers=(1, 1, 1, 1))), "BasicBlock", _resnet_se),
    "seresnet": (("seresnet18", dict(layers=(1, 1, 1, 1))), "BasicBlock", _resnet_se),
    "resnext": (("resnext50_32x4d", dict(layers=(1, 1, 1, 1))), "Bottleneck", _resnext_bottleneck),
    "resnext_byob": (("resnext26ts", {}), "BottleneckBlock", _byob_bottleneck),
}


@pytest.mark.parametrize("fam", list(FAMILIES))
def test_scale_one_is_timms_own_forward_exactly(fam):
    (name, kw), block_type, _ = FAMILIES[fam]
    ref = _timm(name, **kw)
    mod = copy.deepcopy(ref)
    d = describe(mod)
    assert d["toggleable"] and not d["uncontrolled"], d
    set_stage_scales(mod, [1.0] * len(d["stages"]))
    assert any(type(m).__name__.startswith("Scaled") for m in mod.modules()), "the scaled code must run"
    assert mod.state_dict().keys() == ref.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(mod(X), ref(X))
        assert torch.equal(mod.embed(X), ref.embed(X))


@pytest.mark.parametrize("fam", list(FAMILIES))
def test_scale_zero_is_the_hand_written_branch_without_shortcut(fam):
    (name, kw), block_type, branch = FAMILIES[fam]
    m = _timm(name, **kw)
    d = describe(m)
    # the last stage with skips that holds this block type (EfficientNetV2's fused blocks come early)
    last = [i for i in d["toggleable"] if any(b["type"] == block_type for b in d["stages"][i]["blocks"])][-1]
    before = sum(p.numel() for p in m.parameters())
    scales = [0.0 if i == last else 1.0 for i in range(len(d["stages"]))]
    set_stage_scales(m, scales, reinit_removed=False)
    st = stages(m)[last]
    checked = 0
    for _, b in st.blocks:
        if type(b).__name__.removeprefix("Scaled") != block_type or not getattr(b, "skip_capable", True):
            continue
        x, y = _block_io(m, b)
        with torch.no_grad():
            want = branch(b, x)
        assert torch.allclose(y, want, atol=1e-6, rtol=1e-5), (fam, (y - want).abs().max())
        checked += 1
    assert checked, f"no {block_type} block checked in {st.name}"
    after = describe(m)
    assert after["stages"][last]["scale"] == 0.0
    assert all(s["scale"] == 1.0 for i, s in enumerate(after["stages"]) if s["toggleable"] and i != last)
    assert sum(p.numel() for p in m.parameters()) <= before  # projections (if any) are gone
    with torch.no_grad():
        assert m(X).shape == (2, 5) and torch.isfinite(m(X)).all()


def test_scale_between_multiplies_the_shortcut():
    (name, kw), _, branch = FAMILIES["convnext"]
    m = _timm(name, **kw)
    set_stage_scales(m, [1, 1, 0.25, 1])
    for _, b in stages(m)[2].blocks:
        x, y = _block_io(m, b)
        with torch.no_grad():
            assert torch.allclose(y, branch(b, x) + 0.25 * x, atol=1e-6)


def test_projection_removed_at_zero_and_cannot_come_back():
    m = _timm("regnetx_002")
    first = stages(m)[3].blocks[0][1]
    n_proj = sum(p.numel() for p in first.downsample.parameters())
    assert n_proj > 0
    before = sum(p.numel() for p in m.parameters())
    set_stage_scales(m, [1, 1, 1, 0])
    assert sum(p.numel() for p in m.parameters()) == before - n_proj
    with pytest.raises(ValueError, match="cannot be restored"):
        set_stage_scales(m, [1, 1, 1, 1])


def test_dead_branch_initialisation_is_undone_for_a_fresh_model():
    import timm
    torch.manual_seed(0)
    cn = timm.create_model("convnext_atto", pretrained=False, num_classes=0, depths=(1, 1, 1, 1), dims=(8, 8, 8, 8))
    assert float(cn.stages[3].blocks[0].gamma.abs().max()) < 1e-5  # timm's layer scale init
    set_stage_scales(cn, [1, 1, 1, 0])
    assert torch.equal(cn.stages[3].blocks[0].gamma, torch.ones_like(cn.stages[3].blocks[0].gamma))
    assert float(cn.stages[2].blocks[0].gamma.abs().max()) < 1e-5  # kept skips keep timm's init
    rg = timm.create_model("regnetx_002", pretrained=False, num_classes=0)
    assert float(rg.s4.b1.conv3.bn.weight.abs().max()) == 0.0  # timm's zero_init_last
    set_stage_scales(rg, [1, 1, 1, 0])
    assert all(float(b.conv3.bn.weight.min()) == 1.0 for b in rg.s4.children())
    assert float(rg.s3.b1.conv3.bn.weight.abs().max()) == 0.0


def test_unknown_block_type_is_analysable_and_says_which_skips_it_cannot_control():
    m = _timm("mixer_s16_224", img_size=32)
    d = describe(m)
    assert d["family"] == "generic" and d["skip_kind"] == "unknown" and d["toggleable"] == []
    assert [u["type"] for u in d["uncontrolled"]] == ["MixerBlock"]
    assert d["uncontrolled"][0]["blocks"] == 8 and "cannot be scaled or removed" in d["uncontrolled"][0]["why"]
    assert len(d["stages"]) >= 2
    with pytest.raises(ParamError, match="no scalable skip"):
        check_scales(m, [1.0] * len(d["stages"]))
    assert len(layer_groups(m)) > 10  # TL-DMI / Fisher units still exist
    with torch.no_grad():
        assert m(X).shape == (2, 5)


def test_vit_blocks_of_another_type_are_not_pretended_scalable():
    from timm.models.vision_transformer import ResPostBlock
    m = _timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4, block_fn=ResPostBlock)
    d = describe(m)
    assert d["family"] == "vit" and d["toggleable"] == []
    assert [u["type"] for u in d["uncontrolled"]] == ["ResPostBlock"]
    with pytest.raises(ParamError, match="ResPostBlock: no skip rule"):
        check_scales(m, [1.0, 1.0, 1.0, 0.0])


def test_any_timm_name_is_an_architecture_with_its_family():
    assert ARCHITECTURES.get("timm:convnext_atto").meta["family"] == "convnext"
    assert ARCHITECTURES.get("regnetx_002").meta["family"] == "regnet"
    assert ARCHITECTURES.get("timm:mixer_s16_224").meta["family"] == "generic"
    from mivis.train import TRAIN_PARAMS
    assert TRAIN_PARAMS.validate({"arch": "timm:convnext_atto"})["arch"] == "timm:convnext_atto"
    assert "timm:convnext_atto" not in list(TRAIN_PARAMS["arch"].choices)[:16]  # menus list the curated ones
    with pytest.raises(ParamError, match="any timm model name"):
        ARCHITECTURES.get("timm:no_such_model")
    with pytest.raises(ParamError):
        TRAIN_PARAMS.validate({"arch": "no_such_model"})
    m = build_classifier("timm:mobilenetv3_small_050", 5, 1, 32)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 5)
