"""Safe weight files: safetensors only, written atomically, checked against the expected model.

Nothing here unpickles: a pickle or zip (torch.save) file is recognised and refused by name.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


class WeightsError(ValueError):
    """A weights file that is corrupt, hostile, or for another model."""


def atomic_path(path: Path):
    """A temp path in the same folder; `os.replace` it onto `path` once complete."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    try:
        clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        meta = {"format": "mivis", **{k: v if isinstance(v, str) else json.dumps(v)
                                      for k, v in (metadata or {}).items()}}
        save_file(clean, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _sniff(path: Path) -> None:
    """Refuse files that are not safetensors before handing them to any parser.

    A safetensors file is an 8-byte little-endian header length n, then n bytes of JSON that
    start with '{'. Anything else is refused, with pickles and zip archives named as such.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read weights file ({e.strerror or e})") from None
    if size >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and n <= min(size - 8, 100_000_000):
            return
        if head[8:9] == b"{":  # a safetensors header (whatever its length's low byte, e.g. 0x80) cut short
            if n > 100_000_000:
                raise WeightsError(f"{path}: safetensors header claims {n} bytes (more than 100 MB); refused")
            raise WeightsError(f"{path}: safetensors file is truncated (header says {n} bytes, file has {size})")
    # pickle protocol 2-5 starts with PROTO (0x80) and the protocol number; 0-1 with these opcodes
    if (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) \
            or head[:2] in (b"(d", b"}q", b"cc", b"(l", b"]q"):
        raise WeightsError(f"{path}: this is a Python pickle, not a safetensors file; "
                           "mivis never unpickles files (it could run code)")
    if head[:2] == b"PK":
        raise WeightsError(f"{path}: this is a zip/torch.save archive, not a safetensors file; "
                           "mivis never unpickles files (it could run code)")
    if size < 9:
        raise WeightsError(f"{path}: file is truncated ({size} bytes), not a safetensors file")
    (n,) = struct.unpack("<Q", head[:8])
    if head[8:9] == b"{":
        raise WeightsError(f"{path}: safetensors file is truncated (header says {n} bytes, file has {size})")
    raise WeightsError(f"{path}: not a safetensors file (no JSON header)")


def read_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise WeightsError(f"{path}: corrupt safetensors file ({_short(e)})") from None


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    _sniff(path)
    try:
        out = {}
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            for k in f.keys():
                out[k] = f.get_tensor(k)
        return out, meta
    except Exception as e:
        raise WeightsError(f"{path}: corrupt or truncated safetensors file ({_short(e)})") from None


def load_into(model: torch.nn.Module, path: str | Path, expect: dict[str, str] | None = None) -> dict:
    """Load weights into `model` after checking metadata (e.g. arch) and every key and shape."""
    tensors, meta = load_tensors(path)
    for key, want in (expect or {}).items():
        got = meta.get(key)
        if got is not None and got != want:
            raise WeightsError(f"{path}: weights are for {key}={got!r}, but {key}={want!r} was expected")
    state = model.state_dict()
    missing = sorted(set(state) - set(tensors))
    extra = sorted(set(tensors) - set(state))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        arch = meta.get("arch", "unknown")
        raise WeightsError(f"{path}: weights do not match the model (file arch {arch!r}): "
                           + "; ".join(parts))
    for k, v in state.items():
        if tuple(v.shape) != tuple(tensors[k].shape):
            raise WeightsError(f"{path}: shape mismatch for {k}: file {tuple(tensors[k].shape)}, "
                               f"model {tuple(v.shape)}")
    bad = first_nonfinite(tensors, {n for n, _ in model.named_parameters()})
    if bad:
        raise WeightsError(f"{path}: weights contain NaN or infinite values (e.g. {bad}); "
                           "a model trained into NaN cannot be used")
    model.load_state_dict(tensors, strict=True)
    return meta


def first_nonfinite(tensors: dict[str, torch.Tensor], params: set[str] | None = None) -> str | None:
    """The name of the first floating tensor holding NaN (or +-inf, for the names in `params`:
    a buffer such as an attention mask may hold -inf on purpose), else None."""
    for k, v in tensors.items():
        if not v.is_floating_point() or not v.numel():
            continue
        if bool(torch.isnan(v).any()) or ((params is None or k in params) and not bool(torch.isfinite(v).all())):
            return k
    return None


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__
