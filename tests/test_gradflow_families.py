"""Gradient flow's skip/residual split on the timm families beyond ResNet / inverted residual / ViT
(tiny configurations, pretrained=False, CPU, 32x32).

Per family: a stage whose skips are removed (s = 0) has a skip share of exactly 0, every other stage
with skips a share strictly between 0 and 1; and for one block the skip-path gradient the analysis
reports equals a reference written here by hand: the block's forward with the shortcut fed its own
copy of the input, whose gradient (plain autograd) is the shortcut path's alone.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mivis.analysis.gradflow import _BlockProbe, _no_inplace, gradient_flow
from mivis.models import Classifier
from mivis.surgery import describe, set_stage_scales, stages

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 3])

FAMILIES = {
    "convnext": ("convnext_atto", dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32))),
    "regnet": ("regnetx_002", {}),
    "swin": ("swin_tiny_patch4_window7_224",
             dict(img_size=32, window_size=4, depths=(1, 1, 2, 1), embed_dim=16, num_heads=(1, 1, 2, 2))),
    "byobnet": ("resnext26ts", {}),
}


def _timm(name: str, **kw) -> Classifier:
    """A random-weight classifier with live residual branches (timm's zero-init last BN / 1e-6 layer
    scale would leave the branch gradient near 0) and non-trivial BN statistics."""
    import timm
    torch.manual_seed(0)
    body = timm.create_model(name, pretrained=False, num_classes=0, **kw)
    model = Classifier(body, getattr(body, "head_hidden_size", None) or body.num_features, 5)
    g = torch.Generator().manual_seed(1)
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


def _flow(model):
    x = X.clone().requires_grad_(True)
    return gradient_flow(model, lambda: F.cross_entropy(model(x), Y), latent=x)


@pytest.mark.parametrize("fam", list(FAMILIES))
def test_skip_share_is_zero_without_skips_and_strictly_between_otherwise(fam):
    name, kw = FAMILIES[fam]
    full = _timm(name, **kw)
    d = describe(full)
    assert d["family"] == fam and d["toggleable"] and not d["uncontrolled"]
    tog = d["toggleable"]
    r = _flow(full)
    assert r["family"] == fam and r["latent_grad_norm"] > 0
    for i, row in enumerate(r["stages"]):
        if i in tog:
            assert row["skip_blocks"] > 0 and 0 < row["skip_share"] < 1, (fam, row)
        else:
            assert row["skip_share"] is None
    for s in (0.0, 0.5):
        cut = copy.deepcopy(full)
        set_stage_scales(cut, [s if i == tog[-1] else 1.0 for i in range(len(d["stages"]))], reinit_removed=False)
        rows = _flow(cut)["stages"]
        if s == 0:
            assert rows[tog[-1]]["skip_share"] == 0.0, (fam, rows[tog[-1]])
        else:
            assert 0 < rows[tog[-1]]["skip_share"] < 1
        assert all(0 < rows[i]["skip_share"] < 1 for i in tog[:-1]), (fam, rows)


def _block_input(model, block) -> torch.Tensor:
    seen = {}
    h = block.register_forward_pre_hook(lambda m, a: seen.update(x=a[0].detach()))
    with torch.no_grad():
        model(X)
    h.remove()
    return seen["x"]


# hand-written forwards out(x_res, x_skip): the shortcut path reads only x_skip (eval mode: drop-path is identity)
def _convnext_block(b, s, x_res, x_skip):  # identity shortcut: out = F(x) + s * x
    h = b.mlp(b.norm(b.conv_dw(x_res)))  # convnext_atto: LayerNorm2d + 1x1-conv MLP on NCHW
    return h * b.gamma.reshape(1, -1, 1, 1) + s * x_skip


def _regnet_block(b, s, x_res, x_skip):  # projection shortcut: out = act3(F(x) + s * bn(conv(x)))
    h = b.conv3(b.se(b.conv2(b.conv1(x_res))))
    return b.act3(h + s * b.downsample.bn(b.downsample.conv(x_skip)))


def _swin_block(b, s, x_res, x_skip):
    # out = s * (s * x + A(x)) + M(s * x + A(x)) = s^2 x + s A(x) + M(s x + A(x)): only s^2 x bypasses both branches
    B, H, W, C = x_res.shape
    a = b._attn(b.norm1(x_res))
    mid = (s * x_res + a).reshape(B, -1, C)
    out = (s * a).reshape(B, -1, C) + b.mlp(b.norm2(mid))
    return out.reshape(B, H, W, C) + s * s * x_skip


REFERENCES = {
    # family: (block picked by (stage index, block index within the stage), hand-written forward)
    "convnext": ((2, 1), _convnext_block),
    "regnet": ((2, 0), _regnet_block),  # a stage's first RegNet block projects its shortcut (stride 2)
    "swin": ((2, 1), _swin_block),
}


@pytest.mark.parametrize("fam", list(REFERENCES))
def test_skip_gradient_equals_a_hand_computed_shortcut_path(fam):
    name, kw = FAMILIES[fam]
    (si, bi), forward = REFERENCES[fam]
    s = 0.5
    model = _timm(name, **kw)
    n = len(describe(model)["stages"])
    set_stage_scales(model, [s if i == si else 1.0 for i in range(n)], reinit_removed=False)
    block = stages(model)[si].blocks[bi][1]
    x0 = _block_input(model, block)
    w = torch.randn(block(x0).shape, generator=torch.Generator().manual_seed(2))

    # reference: the shortcut reads its own leaf, so that leaf's gradient is the shortcut path's alone
    x_res, x_skip = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    with _no_inplace(model):
        ref_out = forward(block, s, x_res, x_skip)
        assert torch.allclose(ref_out, block(x0), atol=1e-5), "the hand-written forward must be the block's"
        (ref_out * w).sum().backward()

    x = x0.clone().requires_grad_(True)
    probe = _BlockProbe(fam, block)
    try:
        with _no_inplace(model):
            (block(x) * w).sum().backward()
    finally:
        probe.remove()
    skip = probe.skip_gradient()
    if fam == "regnet":
        assert block.downsample is not None and any(True for _ in block.downsample.parameters())
    assert torch.allclose(probe.g_x, x.grad)
    assert torch.allclose(skip, x_skip.grad, atol=1e-6, rtol=1e-4), (fam, (skip - x_skip.grad).abs().max())
    assert torch.allclose(probe.g_x - skip, x_res.grad, atol=1e-6, rtol=1e-4)
    assert skip.abs().sum() > 0 and (probe.g_x - skip).abs().sum() > 0


def test_families_without_an_additive_skip_rule_get_stage_norms_and_no_skip_share():
    """DenseNet's concatenations have no skip/residual split: every stage still gets its gradient norm (the first
    dense layer takes a list, [block input]) and a skip share of None."""
    from mivis.models import build_classifier
    torch.manual_seed(0)
    m = build_classifier("densenet121", 5, 3, 32).eval()
    r = _flow(m)
    assert r["family"] == "densenet" and len(r["stages"]) == 4
    assert all(s["grad_norm"] > 0 and s["skip_share"] is None and s["skip_blocks"] == 0 for s in r["stages"])
