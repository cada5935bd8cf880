"""Architecture registry (backed by timm, nothing pretrained) and the classifier wrapper.

Every classifier is `Classifier(body, head)`: `body` is a timm model built with num_classes=0
(it returns pooled penultimate features), `head` maps features to logits. Defenses that change
the head (CALoR, MID) replace `head`; skip surgery edits `body` in place.
"""
from __future__ import annotations

import torch
from torch import nn

from .params import Param, ParamError, ParamSet
from .registry import Registry

ARCHITECTURES = Registry("architecture")


class Classifier(nn.Module):
    def __init__(self, body: nn.Module, num_features: int, num_classes: int):
        super().__init__()
        self.body = body
        self.num_features = num_features
        self.num_classes = num_classes
        self.head: nn.Module = nn.Linear(num_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (what KNN distance and feature Frechet distance use)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _timm_builder(timm_name: str, fixed: dict | None = None, after=None):
    def build(in_chans: int, img_size: int, **arch_params) -> nn.Module:
        import timm
        kwargs = {**(fixed or {}), **arch_params}
        if timm_name.startswith(("vit_", "deit_")):
            kwargs["img_size"] = img_size
        body = timm.create_model(timm_name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
        return after(body) if after else body
    return build


def _drop_pre_logits(body: nn.Module) -> nn.Module:
    # timm's VGG carries a 4096-wide ConvMlp before the head; the MI papers' VGG16 ends at the
    # conv features + pooling (~14.7M parameters), so drop it.
    body.pre_logits = nn.Identity()
    return body


def register_timm(name: str, timm_name: str, family: str, help: str, params: ParamSet | None = None,
                  fixed: dict | None = None, after=None, **meta) -> None:
    ARCHITECTURES.register(name, _timm_builder(timm_name, fixed, after), params=params, help=help,
                           family=family, timm_name=timm_name, **meta)


for _d in (18, 34, 50, 101, 152):
    register_timm(f"resnet{_d}", f"resnet{_d}", "resnet", f"ResNet-{_d} (additive skips)")
for _d in (121, 161, 169, 201):
    register_timm(f"densenet{_d}", f"densenet{_d}", "densenet", f"DenseNet-{_d} (concatenative skips)")
register_timm("efficientnet_b0", "efficientnet_b0", "inverted_residual", "EfficientNet-B0 (inverted residuals)")
register_timm("mobilenetv2", "mobilenetv2_100", "inverted_residual", "MobileNetV2 (inverted residuals)")
_VIT_PARAMS = ParamSet([Param("patch_size", int, 8, "ViT patch size in pixels", choices=(4, 8, 16))])
register_timm("vit_tiny", "vit_tiny_patch16_224", "vit", "ViT-Tiny (residual attention/MLP blocks)",
              params=_VIT_PARAMS)
register_timm("deit_tiny", "deit_tiny_patch16_224", "vit", "DeiT-Tiny (residual attention/MLP blocks)",
              params=_VIT_PARAMS)
register_timm("vgg16", "vgg16_bn", "vgg", "VGG16 with BatchNorm (no skips: the reference)",
              after=_drop_pre_logits)
register_timm("vgg11", "vgg11_bn", "vgg", "VGG11 with BatchNorm (no skips; a compact evaluation model)",
              after=_drop_pre_logits)
register_timm("repvgg_a0", "repvgg_a0", "repvgg", "RepVGG-A0 (train-time identity/1x1 branches, fusable)")


def build_classifier(arch: str, num_classes: int, in_chans: int, img_size: int,
                     arch_params: dict | None = None) -> Classifier:
    entry = ARCHITECTURES.get(arch)
    p = entry.params.validate(arch_params, context=f"architecture {arch}")
    if "patch_size" in p and img_size % p["patch_size"]:
        raise ParamError(f"patch_size: image size {img_size} is not divisible by {p['patch_size']}; "
                         f"allowed: {[s for s in entry.params['patch_size'].choices if img_size % s == 0]}")
    body = entry.obj(in_chans, img_size, **p)
    return Classifier(body, body.num_features, num_classes)


def model_config(arch: str, num_classes: int, in_chans: int, img_size: int,
                 arch_params: dict | None = None, defenses: dict | None = None) -> dict:
    entry = ARCHITECTURES.get(arch)
    return {"arch": arch, "arch_params": entry.params.validate(arch_params, context=f"architecture {arch}"),
            "num_classes": num_classes, "in_chans": in_chans, "img_size": img_size,
            "defenses": dict(defenses or {})}


def model_from_config(cfg: dict, phase: str = "final") -> Classifier:
    """Rebuild a classifier exactly as trained: architecture, then every structural defense."""
    from .defenses import instantiate
    model = build_classifier(cfg["arch"], cfg["num_classes"], cfg["in_chans"], cfg["img_size"],
                             cfg.get("arch_params"))
    for d in instantiate(cfg.get("defenses", {}), cfg):
        model = d.modify_model(model, phase)
    return model


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
