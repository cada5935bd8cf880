"""Start a classifier's body from a local timm checkpoint (e.g. ImageNet weights as safetensors).

The papers' targets are ImageNet-pretrained; users who have the weights on disk (timm's
`model.safetensors` files) can start from them. Nothing downloads. The file is matched to the
model by key names and shapes: the classifier head is dropped (a new head is trained), a 3-channel
stem is summed over its input channels for 1-channel (grayscale) data, a ViT's position embedding
is resampled to the image size, and tensors of modules removed by skip surgery (projections of
stages with scale 0) are left unused. Anything else that does not fit is refused with one line
naming the problem and, when it can tell, the architecture the file is for.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch

from .models import ARCHITECTURES, Classifier
from .weights import WeightsError, first_nonfinite, load_tensors

_STRIP = ("module.", "model.", "body.")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, memoised by path, size and mtime (a sweep asks once per trial)."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _normalise(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in tensors.items():
        for p in _STRIP:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out


def _head_prefixes(body: torch.nn.Module) -> tuple[str, ...]:
    """The classifier of the timm model this body was built from (dropped: mivis trains its own head)."""
    cls = getattr(body, "pretrained_cfg", {}).get("classifier") or "fc"
    names = cls if isinstance(cls, (list, tuple)) else (cls,)
    # mivis's VGG drops timm's 4096-wide pre-logits block (models._drop_pre_logits): not loaded either
    extra = ("pre_logits.",) if isinstance(getattr(body, "pre_logits", None), torch.nn.Identity) else ()
    return tuple(f"{n}." for n in names) + extra


@lru_cache(maxsize=None)
def _arch_keys(arch: str) -> frozenset:
    """State-dict keys of a registered architecture as timm ships it (1000 classes, 3 channels)."""
    import timm
    entry = ARCHITECTURES.get(arch)
    kw = {"img_size": 224} if entry.meta.get("family") == "vit" else {}
    with torch.device("meta"):
        m = timm.create_model(entry.meta["timm_name"], pretrained=False, **kw)
    return frozenset(m.state_dict())


def guess_architecture(keys: set[str]) -> str | None:
    """The registered architecture whose timm keys the file has exactly (for the error message)."""
    for arch in ARCHITECTURES.names():
        try:
            if _arch_keys(arch) == keys:
                return arch
        except Exception:  # an architecture timm cannot build on the meta device: skip it
            continue
    return None


def _adapt(key: str, src: torch.Tensor, want: torch.Tensor, first_conv: str) -> torch.Tensor | None:
    if src.shape == want.shape:
        return src
    if key == f"{first_conv}.weight" and src.dim() == 4 and src.shape[0] == want.shape[0] \
            and src.shape[2:] == want.shape[2:] and want.shape[1] == 1:
        return src.sum(1, keepdim=True)  # grayscale input = the same gray value in every colour channel
    if key == "pos_embed" and src.dim() == 3 and src.shape[-1] == want.shape[-1]:
        from timm.layers import resample_abs_pos_embed
        n_new = want.shape[1] - 1
        side = int(round(n_new ** 0.5))
        return resample_abs_pos_embed(src, [side, side], num_prefix_tokens=1)
    return None


def load_pretrained_body(model: Classifier, path: str | Path, arch: str) -> dict:
    """Copy a timm checkpoint into `model.body`; returns a small report (loaded / dropped / adapted)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"pretrained checkpoint {path} does not exist")
    tensors = _normalise(load_tensors(path)[0])
    body = model.body
    own = body.state_dict()
    head = _head_prefixes(body)
    first_conv = getattr(body, "pretrained_cfg", {}).get("first_conv") or "conv1"
    dropped = sorted(k for k in tensors if k.startswith(head) and k not in own)
    take, adapted, mismatched = {}, [], []
    for k, v in tensors.items():
        if k in dropped or k not in own:
            continue
        got = _adapt(k, v, own[k], first_conv)
        if got is None:
            mismatched.append(f"{k}: file {tuple(v.shape)}, model {tuple(own[k].shape)}")
        else:
            if got is not v:
                adapted.append(k)
            take[k] = got.to(own[k].dtype)
    missing = sorted(k for k in own if k not in take and not k.endswith("num_batches_tracked"))
    unused = sorted(k for k in tensors if k not in own and k not in dropped)
    # modules skip surgery removed (a scale-0 stage's projection) are the only tensors allowed to go unused
    removed_by_surgery = [k for k in unused if ".downsample." in k or k.startswith("downsample")]
    foreign = [k for k in unused if k not in removed_by_surgery]
    if mismatched or missing or foreign:
        guess = guess_architecture(set(tensors))
        hint = f"; the file looks like a {guess} checkpoint" if guess and guess != arch else ""
        parts = []
        if missing:
            parts.append(f"{len(missing)} model tensors missing from the file (e.g. {missing[0]})")
        if foreign:
            parts.append(f"{len(foreign)} file tensors the model has no place for (e.g. {foreign[0]})")
        if mismatched:
            parts.append(f"{len(mismatched)} shapes differ (e.g. {mismatched[0]})")
        raise WeightsError(f"{path}: not a {arch} checkpoint this model can start from: "
                           + "; ".join(parts) + hint)
    bad = first_nonfinite(take, {n for n, _ in body.named_parameters()})
    if bad:  # refused here, before a run exists (not a FloatingPointError at epoch 1)
        raise WeightsError(f"{path}: weights contain NaN or infinite values (e.g. {bad}); a model cannot start "
                           "from them")
    body.load_state_dict(take, strict=False)
    return {"loaded": len(take), "head_dropped": len(dropped), "adapted": adapted,
            "unused_removed_by_surgery": len(removed_by_surgery)}
