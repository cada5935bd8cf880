"""One architecture, two spellings: a bare timm name ('convnext_atto') or a curated name and the 'timm:' form of
the same timm model compare equal wherever runs' architectures are compared (models.same_architecture): the
judge must be another architecture than the target, an init run must be the model's own architecture."""
from __future__ import annotations

import pytest

from mivis.models import arch_identity, same_architecture
from mivis.params import ParamError

DATA = {"dataset": "synthetic", "n_private": 4, "image_size": 32, "test_per_identity": 2}


@pytest.mark.parametrize("a, b, same", [
    ("convnext_atto", "timm:convnext_atto", True),
    ("resnet18", "timm:resnet18", True),
    ("vgg11", "timm:vgg11_bn", True),           # the curated name builds timm's vgg11_bn
    ("mobilenetv2", "timm:mobilenetv2_100", True),
    ("vgg11", "timm:vgg11", False),             # timm's BN-free VGG-11 is another model
    ("resnet18", "timm:resnet18d", False),
    ("convnext_atto", "resnet18", False),
])
def test_same_architecture(a, b, same):
    assert same_architecture(a, b) is same and same_architecture(b, a) is same
    assert (arch_identity(a) == arch_identity(b)) is same


def _classifier_run(ws, kind: str, arch: str, fingerprint: str = "fp"):
    model = {"arch": arch, "arch_params": {}, "num_classes": 4, "in_chans": 1, "img_size": 32, "defenses": {}}
    run = ws.create(kind, {"role": kind, "model": model, "data": dict(DATA)}, data_fingerprint=fingerprint)
    run.write_json("split.json", {"private": ["a", "b", "c", "d"]})
    run.finish({})
    return ws.get(run.id)


def test_a_judge_spelled_as_the_targets_timm_name_is_the_same_architecture(ws):
    from mivis.evaluation import check_judge
    target = _classifier_run(ws, "target", "convnext_atto")
    twin = _classifier_run(ws, "eval", "timm:convnext_atto")
    with pytest.raises(ParamError, match=r"timm:convnext_atto \(the same architecture as convnext_atto\).*"
                                         r"needs a different architecture") as e:
        check_judge(ws, twin.id, target)
    assert "convnext_atto" not in str(e.value).split("allowed:")[1]  # the suggestions are other architectures
    other = _classifier_run(ws, "eval", "timm:resnet10t")
    assert check_judge(ws, other.id, target).id == other.id
    # and the curated spelling of a timm model: vgg11 is timm's vgg11_bn
    vgg_target = _classifier_run(ws, "target", "timm:vgg11_bn")
    vgg_eval = _classifier_run(ws, "eval", "vgg11")
    with pytest.raises(ParamError, match="different architecture"):
        check_judge(ws, vgg_eval.id, vgg_target)


def test_an_init_run_spelled_as_the_timm_name_fits_and_another_architecture_is_refused(ws):
    from mivis.train import prepare_training
    init = _classifier_run(ws, "public", "timm:resnet10t")
    cfg = {"arch": "resnet10t", "init_run": init.id, "device": "cpu", "epochs": 1}
    assert prepare_training("target", cfg, DATA, workspace=ws)[0]["init_run"] == init.id
    with pytest.raises(ParamError, match=r"is a timm:resnet10t, not a resnet18"):
        prepare_training("target", {**cfg, "arch": "resnet18"}, DATA, workspace=ws)
