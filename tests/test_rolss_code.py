"""mivis's RoLSS options against references written from the public RoLSS code (github.com/ShailenSmith/RoLSS,
commit defabf6): its ResNet (models/torchvision/models/resnet.py: BasicBlock / Bottleneck forward 91-109 /
149-171, ResNet.__init__ 215-223 with layer3's split=0.8, _make_layer 265-336), its MobileNetV2
(models/torchvision/models/mobilenetv2.py: InvertedResidual 19-77, MobileNetV2.__init__ 118-181), its DenseNet
(models/torchvision/models/densenet.py: _DenseBlock 103-187, DenseNet.__init__ 243-288) and its
released skip configs (configs/training/targets/FaceScrub/*/skip.yaml line 8). The references below are
written from those equations; they read only the weights of mivis's model, never its forward.
Also the ResNets' BatchNorm initialisation knob (zero_init_last: timm's default vs torchvision's ones)."""
import pytest
import torch
import torch.nn.functional as F

from mivis.defenses import instantiate
from mivis.models import build_classifier, model_config, model_from_config
from mivis.params import ParamError
from mivis.surgery import describe

# the layer3 blocks that have skip 0 in the RoLSS code (blocks 0 .. int(0.8 n) - 1 keep the stage's skip),
# written out per network: layer3 has 2 / 6 / 6 / 23 / 36 blocks
SPLIT_ZERO = {"resnet18": [1], "resnet34": [4, 5], "resnet50": [4, 5], "resnet101": [18, 19, 20, 21, 22],
              "resnet152": list(range(28, 36))}
# configs/training/targets/FaceScrub/<net>/skip.yaml line 8
RELEASED = {"resnet18": [1, 1, 1, 0.6], "resnet34": [1, 1, 1, 0], "resnet50": [1, 1, 1, 0], "resnet101": [1, 1, 1, 0],
            "resnet152": [1, 1, 1, 0], "mobilenetv2": [1, 1, 1, 1, 1, 1, 0], "densenet121": [1, 0, 1, 1],
            "densenet161": [1, 0, 1, 1], "densenet169": [0, 1, 1, 1], "densenet201": [1, 0, 1, 1]}
EPS = 1e-5  # torch.nn.BatchNorm2d's default, which the RoLSS code's norm_layer uses


def _defended(arch: str, skips: dict, **kw):
    cfg = model_config(arch, 5, 3, 32, defenses={"skips": skips}, **kw)
    (sk,) = instantiate(cfg["defenses"], cfg)
    return cfg | {"defenses": {"skips": dict(sk.p)}}, sk


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter and BatchNorm statistic random (no BatchNorm weight left at 0 or 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=g))
                elif name.endswith("running_mean"):
                    t.copy_(0.1 * torch.randn(t.shape, generator=g))
                elif t.ndim == 1 and "bn" in name and name.endswith("weight"):
                    t.copy_(0.5 + 0.5 * torch.rand(t.shape, generator=g))
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * (2.0 / max(1, t[0].numel())) ** 0.5)
    return model.eval()


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, EPS)


# ---- ResNet, from the RoLSS code's resnet.py -------------------------------------------------------------

def _rolss_block_skips(stage_skip: float, blocks: int, split: float) -> list[float]:
    """_make_layer (265-336): block 0 with the stage's skip (287-291), blocks 1 .. split_blocks - 1 with it
    (297-308), blocks split_blocks .. blocks - 1 with 0 (310-321); split_blocks = int(split * blocks) (295)."""
    split_blocks = int(split * blocks)
    return [stage_skip] + [stage_skip for _ in range(1, split_blocks)] + [0 for _ in range(split_blocks, blocks)]


def _rolss_resnet(model, x: torch.Tensor, skip: list[float], layer3_split: float) -> torch.Tensor:
    body = model.body
    x = F.relu(_bn(F.conv2d(x, body.conv1.weight, stride=2, padding=3), body.bn1))
    x = F.max_pool2d(x, 3, 2, 1)
    inplanes = 64
    for i, planes in enumerate((64, 128, 256, 512)):
        layer = getattr(body, f"layer{i + 1}")
        split = layer3_split if i == 2 else 1
        skips = _rolss_block_skips(skip[i], len(layer), split)
        assert len(skips) == len(layer)
        for j, (blk, s) in enumerate(zip(layer, skips)):
            stride = 2 if (j == 0 and i > 0) else 1
            bottleneck = hasattr(blk, "conv3")
            expansion = 4 if bottleneck else 1
            if bottleneck:
                out = F.relu(_bn(F.conv2d(x, blk.conv1.weight), blk.bn1))
                out = F.relu(_bn(F.conv2d(out, blk.conv2.weight, stride=stride, padding=1), blk.bn2))
                out = _bn(F.conv2d(out, blk.conv3.weight), blk.bn3)
            else:
                out = F.relu(_bn(F.conv2d(x, blk.conv1.weight, stride=stride, padding=1), blk.bn1))
                out = _bn(F.conv2d(out, blk.conv2.weight, padding=1), blk.bn2)
            identity = x
            if j == 0 and (stride != 1 or inplanes != planes * expansion):  # the projection (281-285)
                if s:  # a block whose skip is 0 never adds it (mivis drops that projection's weights)
                    identity = _bn(F.conv2d(x, blk.downsample[0].weight, stride=stride), blk.downsample[1])
            if s:  # `if self.skip: out += self.skip * identity` (104-105, 166-167)
                out = out + s * identity
            x = F.relu(out)
            inplanes = planes * expansion
    return model.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_released_with_layer3_split_matches_the_rolss_code(arch):
    cfg, sk = _defended(arch, {"preset": "released", "layer3_split": True})
    assert sk.p["scales"] == RELEASED[arch] and sk.p["layer3_split"] is True
    model = _randomise(model_from_config(cfg))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(x), _rolss_resnet(model, x, RELEASED[arch], 0.8)
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
        # without the option, layer3 follows the scales alone: another network than the code's
        plain = _randomise(model_from_config(_defended(arch, {"preset": "released"})[0]))
        full_layer3 = _rolss_resnet(plain, x, RELEASED[arch], 1)
        assert torch.allclose(plain(x), full_layer3, atol=1e-4, rtol=1e-4)
        assert (plain(x) - _rolss_resnet(plain, x, RELEASED[arch], 0.8)).abs().max() > 1e-2


def test_layer3_split_on_given_scales_and_a_full_model():
    # the code splits layer3 in every model: its "full" ResNet-18 (skip unset = [1, 1, 1, 1]) included
    cfg, sk = _defended("resnet18", {"scales": [1, 0.5, 0.3, 1], "layer3_split": True})
    model = _randomise(model_from_config(cfg), seed=3)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(model(x), _rolss_resnet(model, x, [1, 0.5, 0.3, 1], 0.8), atol=1e-4, rtol=1e-4)
    assert sk.p["scales"] == [1, 0.5, 0.3, 1]  # the stage record stays the scales given


@pytest.mark.parametrize("arch", sorted(SPLIT_ZERO))
def test_layer3_split_blocks_per_network(arch):
    cfg, _ = _defended(arch, {"scales": [1, 1, 1, 1], "layer3_split": True})
    with torch.device("meta"):
        stages = describe(model_from_config(cfg))["stages"]
    layer3 = [b["scale"] for b in stages[2]["blocks"]]
    assert [j for j, s in enumerate(layer3) if s == 0] == SPLIT_ZERO[arch]
    assert all(s == 1 for j, s in enumerate(layer3) if j not in SPLIT_ZERO[arch])
    assert all(b["scale"] == 1 for st in (stages[0], stages[1], stages[3]) for b in st["blocks"])


def test_layer3_split_refusals():
    with pytest.raises(ParamError, match="ResNets only"):
        _defended("densenet121", {"layer3_split": True})
    with pytest.raises(ParamError, match="ResNets only"):
        _defended("mobilenetv2", {"preset": "released", "layer3_split": True})
    with pytest.raises(ParamError, match="layer3_split"):  # timm's resnet10t: one block per stage
        _defended("timm:resnet10t", {"layer3_split": True})


# ---- MobileNetV2, from the RoLSS code's mobilenetv2.py -------------------------------------------------

# inverted_residual_setting (118-128): t, c, n, s
SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def _rolss_mobilenetv2(model, x: torch.Tensor, skip: list[float]) -> torch.Tensor:
    body = model.body
    x = F.relu6(_bn(F.conv2d(x, body.conv_stem.weight, stride=2, padding=1), body.bn1))  # first layer (154-162)
    inp = 32
    for idx, (t, c, n, s) in enumerate(SETTING):  # 166-182: group idx's blocks take skip[idx]
        for i in range(n):
            stride = s if i == 0 else 1
            blk = body.blocks[idx][i]
            hidden = int(round(inp * t))
            use_res_connect = stride == 1 and inp == c  # 39
            if t != 1:  # pw (42-52), dw (56-63), pw-linear (65-66)
                h = F.relu6(_bn(F.conv2d(x, blk.conv_pw.weight), blk.bn1))
                h = F.relu6(_bn(F.conv2d(h, blk.conv_dw.weight, stride=stride, padding=1, groups=hidden), blk.bn2))
                out = _bn(F.conv2d(h, blk.conv_pwl.weight), blk.bn3)
            else:  # timm's DepthwiseSeparableConv holds the expand-1 block's dw and pw-linear
                h = F.relu6(_bn(F.conv2d(x, blk.conv_dw.weight, stride=stride, padding=1, groups=hidden), blk.bn1))
                out = _bn(F.conv2d(h, blk.conv_pw.weight), blk.bn2)
            assert out.shape[1] == c
            x = skip[idx] * x + out if (use_res_connect and skip[idx]) else out  # forward (73-77)
            inp = c
    x = F.relu6(_bn(F.conv2d(x, body.conv_head.weight), body.bn2))  # last layer (184-192), 1280 channels
    return model.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_mobilenetv2_released_preset_is_the_codes_config_and_removes_no_skip():
    cfg, sk = _defended("mobilenetv2", {"preset": "released"})
    assert sk.p["scales"] == [1.0] * 7  # the config's 0 falls on the last group, which has no skip
    model = _randomise(model_from_config(cfg), seed=4)
    plain = model_from_config(model_config("mobilenetv2", 5, 3, 32))
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = _rolss_mobilenetv2(model, x, RELEASED["mobilenetv2"])
        assert torch.allclose(model(x), want, atol=1e-4, rtol=1e-4), (model(x) - want).abs().max()
        assert torch.allclose(plain.eval()(x), want, atol=1e-4, rtol=1e-4)


def test_mobilenetv2_group_scales_map_onto_timms_blocks():
    scales = [1, 0.5, 1, 0, 0.3, 0.7, 1]  # groups 1-5 carry skips (stride-1 blocks with equal channels)
    cfg, _ = _defended("mobilenetv2", {"scales": scales})
    model = _randomise(model_from_config(cfg), seed=6)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = _rolss_mobilenetv2(model, x, scales)
        assert torch.allclose(model(x), want, atol=1e-4, rtol=1e-4), (model(x) - want).abs().max()
        assert (want - _rolss_mobilenetv2(model, x, [1] * 7)).abs().max() > 1e-2  # the scales do act


# ---- BatchNorm initialisation of the ResNets ----------------------------------------------------------

def _last_norms(model):
    return [b.bn3 if hasattr(b, "bn3") else b.bn2 for i in range(1, 5) for b in getattr(model.body, f"layer{i}")]


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_zero_init_last_knob(arch):
    timm_default = build_classifier(arch, 5, 3, 32)
    assert all(bool((n.weight == 0).all()) for n in _last_norms(timm_default))
    ones = build_classifier(arch, 5, 3, 32, {"zero_init_last": False})  # torchvision / the RoLSS code (248-253)
    bns = [m for m in ones.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in bns)
    with pytest.raises(ParamError, match="zero_init_last"):
        build_classifier(arch, 5, 3, 32, {"zero_init_last": "maybe"})
    with pytest.raises(ParamError):
        build_classifier("vgg11", 5, 3, 32, {"zero_init_last": False})  # a knob of the ResNets only


def test_runs_stored_without_the_knob_rebuild_and_are_found_again(ws, tiny_data):
    from mivis.sweep.steps import Step, find_existing
    from mivis.train import as_recorded_before, load_classifier, training_config, train_run
    train = {"arch": "resnet18", "epochs": 1, "batch_size": 16, "device": "cpu"}
    cfg = training_config("target", train, tiny_data, None, None, ws)
    assert cfg["model"]["arch_params"] == {"zero_init_last": True}
    old = as_recorded_before(cfg)
    assert old["model"]["arch_params"] == {} and as_recorded_before(old) is None
    rec = train_run("target", train, tiny_data, workspace=ws)
    # make it a run stored before the knob existed: its config has no key for it
    with ws._connect() as con:
        from mivis.runs import config_hash
        import json
        con.execute("UPDATE runs SET config = ?, config_hash = ? WHERE id = ?",
                    (json.dumps(old), config_hash(old), rec.id))
    model, back = load_classifier(ws, rec.id)  # rebuilds (default filled in) and loads strictly
    assert back.config["model"]["arch_params"] == {}
    assert model_config("resnet18", 6, 1, 32, back.config["model"]["arch_params"])["arch_params"] == \
        {"zero_init_last": True}
    step = Step("train", {"role": "target", "train": train, "data": tiny_data, "defenses": {}, "arch_params": {}})
    assert find_existing(step, ws, {}) == rec.id  # sweep reuse still finds it
    other = Step("train", {"role": "target", "train": train, "data": tiny_data, "defenses": {},
                           "arch_params": {"zero_init_last": False}})
    assert find_existing(other, ws, {}) is None  # another init is another training


# ---- DenseNet, from the RoLSS code's densenet.py --------------------------------------------------------

def _rolss_dense_layer(layer, features: list) -> torch.Tensor:
    """torchvision's _DenseLayer: BN-ReLU-1x1 conv, BN-ReLU-3x3 conv on the concatenated inputs."""
    h = torch.cat(features, 1)
    h = F.conv2d(F.relu(_bn(h, layer.norm1)), layer.conv1.weight)
    return F.conv2d(F.relu(_bn(h, layer.norm2)), layer.conv2.weight, padding=1)


def _rolss_dense_block(layers: list, x: torch.Tensor, skip: float) -> torch.Tensor:
    """_DenseBlock.forward (densenet.py 173-187): after each layer the newest earlier map is cut to its first
    round(channels * skip) channels, then the layer's output is appended; the block returns them all."""
    features = [x]
    for layer in layers:
        new_features = _rolss_dense_layer(layer, features)
        channels = features[-1].shape[1]
        features[-1] = features[-1][:, :round(channels * skip), :, :]
        features.append(new_features)
    return torch.cat(features, 1)


def _rolss_densenet(model, x: torch.Tensor, skip: list[float]) -> torch.Tensor:
    f = model.body.features
    x = F.max_pool2d(F.relu(_bn(F.conv2d(x, f.conv0.weight, stride=2, padding=3), f.norm0)), 3, 2, 1)
    for i in range(4):
        x = _rolss_dense_block(list(getattr(f, f"denseblock{i + 1}").values()), x, skip[i])
        if i < 3:  # _Transition (190-196), its width num_features_in (262-266)
            t = getattr(f, f"transition{i + 1}")
            x = F.avg_pool2d(F.conv2d(F.relu(_bn(x, t.norm)), t.conv.weight), 2, 2)
    x = F.relu(_bn(x, f.norm5))  # norm5, then the ReLU of DenseNet.forward
    return model.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("arch,skips", [("densenet121", {"preset": "released"}),  # [1, 0, 1, 1]
                                        ("densenet169", {"preset": "released"}),  # [0, 1, 1, 1]
                                        ("densenet121", {"scales": [0.25, 1, 0.5, 0]})])
def test_densenet_skips_match_the_rolss_code(arch, skips):
    cfg, sk = _defended(arch, skips)
    assert sk.p["scales"] == skips.get("scales", RELEASED[arch])
    model = _randomise(model_from_config(cfg), seed=8)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        want = _rolss_densenet(model, x, sk.p["scales"])
        assert torch.allclose(model(x), want, atol=1e-4, rtol=1e-4), (model(x) - want).abs().max()


@pytest.mark.parametrize("arch", ["vit_tiny", "deit_tiny"])
def test_vit_released_config_with_the_codes_mode(arch):
    # vit/skip.yaml, deit/skip.yaml lines 8-9: skip [0, 1 x 11], mode mlp; vision_transformer.py 121-134: with
    # mode mlp the attention residual stays (x + input) and the MLP residual is scaled (y + skip * x)
    for given in ({"preset": "released"}, {"preset": "released", "mode": "mlp"}):
        cfg, sk = _defended(arch, given)
        assert sk.p["mode"] == "mlp" and sk.p["block_scales"] == [0.0] + [1.0] * 11
        m = model_from_config(cfg)
        got = [(getattr(b, "attn_scale", 1.0), getattr(b, "mlp_scale", 1.0)) for b in m.body.blocks]
        assert got == [(1.0, 0.0)] + [(1.0, 1.0)] * 11
    _, sk = _defended(arch, {"preset": "released", "mode": "attn"})  # asked for: the attention residual
    assert sk.p["mode"] == "attn"


def test_sweep_keys_of_the_changed_vit_preset_carry_the_version():
    from mivis.defenses.base import defenses_version
    from mivis.sweep.steps import trial_steps
    released = {"skips": {"preset": "released"}}
    assert defenses_version(released, "vit_tiny") == 3 and defenses_version(released, "resnet18") == 1
    assert defenses_version({"skips": {"preset": "released", "mode": "attn"}}, "vit_tiny") == 1
    assert defenses_version({"skips": {"scales": [0, 1, 1, 1]}}, "vit_tiny") == 1

    def target_spec(arch):
        steps, _ = trial_steps({"target": {"arch": arch, "defenses": released}, "attack": {"name": "whitebox"}})
        return next(s.spec for s in steps if s.kind == "train" and s.spec.get("role") == "target")
    assert target_spec("vit_tiny").get("method_version") == 3  # a stored step of the old preset is not reused
    assert "method_version" not in target_spec("resnet18")  # unchanged: the ResNet keys stay as they were


# ---- ConvNeXt-T, from the RoLSS code's convnext.py -----------------------------------------------------

def _rolss_cnblock(blk, x: torch.Tensor, skip: float) -> torch.Tensor:
    """CNBlock.forward (convnext.py 64-69): layer_scale * block(input), then `if self.skip: result += input`;
    block = 7x7 depthwise conv, LayerNorm over channels, Linear 4x, GELU, Linear (torchvision's CNBlock)."""
    h = F.conv2d(x, blk.conv_dw.weight, blk.conv_dw.bias, padding=3, groups=x.shape[1]).permute(0, 2, 3, 1)
    h = F.layer_norm(h, (h.shape[-1],), blk.norm.weight, blk.norm.bias, 1e-6)
    h = F.linear(F.gelu(F.linear(h, blk.mlp.fc1.weight, blk.mlp.fc1.bias)), blk.mlp.fc2.weight, blk.mlp.fc2.bias)
    result = blk.gamma.view(-1, 1, 1) * h.permute(0, 3, 1, 2)
    return result + x if skip else result


def test_convnext_tiny_released_config_matches_the_rolss_code_block_by_block():
    cfg, sk = _defended("timm:convnext_tiny", {"preset": "released"})
    assert sk.p["scales"] == [0, 0, 1, 1]  # convnext/skip.yaml line 8
    model = _randomise(model_from_config(cfg), seed=10)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for st, skip in zip(model.body.stages, [0, 0, 1, 1]):
            blk = st.blocks[0]
            x = torch.randn(2, blk.conv_dw.in_channels, 4, 4, generator=g)
            want = _rolss_cnblock(blk, x, skip)
            assert torch.allclose(blk(x), want, atol=1e-4, rtol=1e-4), (blk(x) - want).abs().max()


def test_a_resnet_student_stored_before_the_knob_is_reused(ws, tiny_data):
    import json

    from mivis.attacks.surrogates import _config, distill
    from mivis.runs import config_hash
    from mivis.train import as_recorded_before, load_classifier, train_run
    target = train_run("target", {"arch": "vgg11", "epochs": 1, "batch_size": 16, "device": "cpu"}, tiny_data,
                       workspace=ws)
    T, _ = load_classifier(ws, target.id)
    public_x = torch.zeros(4, 1, 32, 32)
    first = distill(ws, target, T, public_x, "resnet18", 1, 0, torch.device("cpu"))
    (student,) = [r for r in ws.list() if r.kind == "surrogate"]
    old = as_recorded_before(_config(target, "resnet18", 1, 0))
    assert old is not None and old["model"]["arch_params"] == {}
    with ws._connect() as con:  # as stored before zero_init_last existed
        con.execute("UPDATE runs SET config = ?, config_hash = ? WHERE id = ?",
                    (json.dumps(old), config_hash(old), student.id))
    again = distill(ws, target, T, public_x, "resnet18", 1, 0, torch.device("cpu"))
    assert [r.id for r in ws.list() if r.kind == "surrogate"] == [student.id]  # found, not distilled again
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(first(x), again(x))
