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

TIMM_PREFIX = "timm:"
PYTHON_PREFIX = "python:"  # an nn.Module given to mivis.api, registered for the process that holds it


class _Architectures(Registry):
    """The curated architectures, plus any timm model by name ("timm:convnext_atto" or a bare timm name
    that is not a curated one), registered on first use: nothing pretrained is ever fetched."""

    def get(self, name: str):
        if isinstance(name, str) and name not in self._entries and timm_name_of(name):
            register_any_timm(name)
        if isinstance(name, str) and name.startswith(PYTHON_PREFIX) and name not in self._entries:
            raise ParamError(f"architecture {name} is a model defined in Python and given to mivis.api in another "
                             "process; give the same module to mivis.api.add_model in this process to use its runs")
        try:
            return super().get(name)
        except ParamError as e:
            raise ParamError(f"{e}; or any timm model name (python -c 'import timm; print(timm.list_models())'), "
                             f"e.g. {TIMM_PREFIX}convnext_atto") from None

    def __contains__(self, name: str) -> bool:
        return super().__contains__(name) or bool(timm_name_of(name))


class ArchChoices(tuple):
    """The curated names (what a menu lists) that also contain every timm model name (what is accepted)."""

    def __contains__(self, name) -> bool:
        return tuple.__contains__(self, name) or name in ARCHITECTURES


ARCHITECTURES = _Architectures("architecture")


def timm_name_of(name: str) -> str | None:
    """The timm model name behind an architecture name outside the curated list, or None."""
    if not isinstance(name, str):
        return None
    bare = name[len(TIMM_PREFIX):] if name.startswith(TIMM_PREFIX) else name
    return bare if bare and bare in _timm_names() else None


def arch_identity(name: str) -> str:
    """The timm model an architecture name builds, so that two spellings of one architecture compare equal:
    'convnext_atto' and 'timm:convnext_atto' -> 'convnext_atto'; a curated name -> the timm model behind it
    ('resnet18' -> 'resnet18', 'vgg11' -> 'vgg11_bn', 'mobilenetv2' -> 'mobilenetv2_100'). A 'timm:' name is
    always the timm model of that name ('timm:vgg11' is timm's BN-free VGG-11, not the curated vgg11)."""
    if not isinstance(name, str):
        return str(name)
    if name.startswith(TIMM_PREFIX):
        return name[len(TIMM_PREFIX):]
    if Registry.__contains__(ARCHITECTURES, name):  # curated (or already registered): no timm lookup
        return ARCHITECTURES.get(name).meta.get("timm_name") or name
    return name  # a bare timm name (or an unknown one: compared as written)


def same_architecture(a: str, b: str) -> bool:
    """Whether two run architecture names are the same architecture (see arch_identity); every comparison
    of runs' architectures goes through this (judges must be another architecture than the target, ...)."""
    return arch_identity(a) == arch_identity(b)


_TIMM_NAMES: set[str] = set()


def _timm_names() -> set[str]:
    if not _TIMM_NAMES:
        import timm
        _TIMM_NAMES.update(timm.list_models())
    return _TIMM_NAMES


def _any_timm_builder(timm_name: str):
    def build(in_chans: int, img_size: int) -> nn.Module:
        import timm
        kw = dict(pretrained=False, num_classes=0, in_chans=in_chans)
        try:  # transformers take the image size; convnets do not accept it
            return timm.create_model(timm_name, img_size=img_size, **kw)
        except TypeError:
            return timm.create_model(timm_name, **kw)
    return build


def register_any_timm(name: str) -> None:
    """Register a timm model by name; its family (and so its skip rule) comes from its block types."""
    from .surgery import family_of
    timm_name = timm_name_of(name)
    build = _any_timm_builder(timm_name)
    with torch.device("meta"):
        family = family_of(build(3, 224))
    ARCHITECTURES.register(name, build, help=f"timm {timm_name} (any timm architecture; {family} skip rule)",
                           family=family, timm_name=timm_name, any_timm=True)


def _input_norm_hook(body: nn.Module, args):
    """[-1, 1] images (mivis's range) -> the imported model's own normalisation."""
    return (args[0] * body.mivis_in_scale + body.mivis_in_shift,) + tuple(args[1:])


def attach_input_norm(body: nn.Module, mean: list[float], std: list[float]) -> nn.Module:
    """Make `body` take mivis images x in [-1, 1] and feed its layers (x01 - mean) / std, x01 = (x + 1) / 2,
    as it was trained; written x * 0.5/std + (0.5 - mean)/std (exactly x for mean = std = 0.5).

    The constants are non-persistent buffers (they follow .to(device), not the weights file: the
    run's config records them) and the mapping is a forward pre-hook, so parameter names stay timm's.
    """
    m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    body.register_buffer("mivis_in_scale", (0.5 / s).float(), persistent=False)
    body.register_buffer("mivis_in_shift", ((0.5 - m) / s).float(), persistent=False)
    body.register_forward_pre_hook(_input_norm_hook)
    return body


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


def _timm_builder(timm_name: str, fixed: dict | None = None, after=None):  # a curated architecture
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


# timm zero-initialises the last BatchNorm of every residual branch (zero_init_last, its default); torchvision's
# ResNet, and the RoLSS code built on it, initialise every BatchNorm weight at 1 (docs/differences.md)
_RESNET_PARAMS = ParamSet([Param(
    "zero_init_last", bool, True, "initialise the last BatchNorm of each residual branch at 0, so each block starts "
    "as its shortcut (timm's default, kept by runs made before this knob); false = every BatchNorm at 1, as "
    "torchvision's ResNet and the RoLSS code (torchvision models/resnet.py, zero_init_residual=False)")])
for _d in (18, 34, 50, 101, 152):
    register_timm(f"resnet{_d}", f"resnet{_d}", "resnet", f"ResNet-{_d} (additive skips)", params=_RESNET_PARAMS)
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
              after=_drop_pre_logits, costly_init=True)
register_timm("vgg11", "vgg11_bn", "vgg", "VGG11 with BatchNorm (no skips; a compact evaluation model)",
              after=_drop_pre_logits, costly_init=True)
register_timm("repvgg_a0", "repvgg_a0", "repvgg", "RepVGG-A0 (train-time identity/1x1 branches, fusable)")


def build_classifier(arch: str, num_classes: int, in_chans: int, img_size: int,
                     arch_params: dict | None = None) -> Classifier:
    entry = ARCHITECTURES.get(arch)
    p = entry.params.validate(arch_params, context=f"architecture {arch}")
    if "patch_size" in p and img_size % p["patch_size"]:
        raise ParamError(f"patch_size: image size {img_size} is not divisible by {p['patch_size']}; "
                         f"allowed: {[s for s in entry.params['patch_size'].choices if img_size % s == 0]}")
    body = entry.obj(in_chans, img_size, **p)
    # what num_classes=0 returns: MobileNetV3 & co. keep a pre-logits layer wider than num_features, VGG
    # drops its (wider) pre-logits; where timm's two widths disagree, one forward pass says which it is
    width = body.num_features
    hidden = getattr(body, "head_hidden_size", None)
    if hidden and hidden != width:
        was = body.training
        with torch.no_grad():
            width = body.eval()(torch.zeros(1, in_chans, img_size, img_size)).shape[-1]
        body.train(was)
    return Classifier(body, width, num_classes)


def model_config(arch: str, num_classes: int, in_chans: int, img_size: int,
                 arch_params: dict | None = None, defenses: dict | None = None) -> dict:
    entry = ARCHITECTURES.get(arch)
    return {"arch": arch, "arch_params": entry.params.validate(arch_params, context=f"architecture {arch}"),
            "num_classes": num_classes, "in_chans": in_chans, "img_size": img_size,
            "defenses": dict(defenses or {})}


# the structural defenses model_from_config applies: mivis.defenses registers its `instantiate` here when it is
# imported (models never imports defenses, the floor above it; train and sizing import defenses)
_DEFENSES: list = []


def use_defenses(instantiate) -> None:
    """Called by mivis.defenses on import: `instantiate(defenses_cfg, model_cfg) -> [Defense]`."""
    _DEFENSES[:] = [instantiate]


def model_from_config(cfg: dict, phase: str = "final") -> Classifier:
    """Rebuild a classifier exactly as trained: architecture, then every structural defense.

    An imported model (cfg["input_norm"]) is built with its own channel count and takes mivis
    images through its own normalisation (attach_input_norm)."""
    if cfg.get("defenses") and not _DEFENSES:
        raise RuntimeError("model_from_config: mivis.defenses is not imported, so this model's defenses "
                           f"({', '.join(cfg['defenses'])}) cannot be applied; import mivis.defenses first")
    instantiate = _DEFENSES[0] if _DEFENSES else (lambda defenses, model_cfg: [])
    norm = cfg.get("input_norm")
    model = build_classifier(cfg["arch"], cfg["num_classes"], norm["in_chans"] if norm else cfg["in_chans"],
                             cfg["img_size"], cfg.get("arch_params"))
    if norm:
        attach_input_norm(model.body, norm["mean"], norm["std"])
    for d in instantiate(cfg.get("defenses", {}), cfg):
        model = d.modify_model(model, phase)
    return model


def model_for_loading(cfg: dict) -> Classifier:
    """model_from_config for weights about to be loaded strictly (every key). An architecture whose random
    initialisation is costly and thrown away (registered with costly_init: VGG drops a 102M-parameter
    head after initialising it, 1.5-2 s a build on a 2-core CPU) is built on the meta device and given
    uninitialised memory instead; the meta device is slower than a plain build for the others. A model
    with non-persistent buffers (computed at build time, not in the weights file) is built normally."""
    arch = cfg["arch"]
    if arch in ARCHITECTURES and ARCHITECTURES.get(arch).meta.get("costly_init"):
        with torch.device("meta"):
            model = model_from_config(cfg, phase="final")
        saved = set(model.state_dict())
        if all(name in saved for name, _ in model.named_buffers()):
            return model.to_empty(device="cpu")
    return model_from_config(cfg, phase="final")


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
