"""Device choice and mixed precision: CUDA with bf16 autocast + channels_last, else CPU fp32."""
from __future__ import annotations

import contextlib
import time

import torch

from .params import ParamError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParamError("device: CUDA was requested but no GPU is available; use device=cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ParamError(f"device: {name!r} is not one of auto, cpu, cuda")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool = True):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    module = module.to(device)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return module


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def timed(fn, device: torch.device) -> float:
    """Wall seconds of fn(), the device's queued work included (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0
