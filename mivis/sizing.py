"""Model-size sanity for this machine: memory and time per epoch, measured now, before anything starts.

`estimate` builds the model at random initialisation, runs one forward/backward step on a small batch
of the real image shape on the chosen device and measures it: the step time, and the activation
memory autograd keeps (the bytes of every tensor saved for backward, summed by a saved-tensor hook,
the same count on CPU and GPU). Memory for a training step is parameters + gradients + AdamW's two
moments + activations scaled to the batch size; time per epoch is the measured step time scaled to
the batch size times the steps of one epoch (an upper estimate on a GPU, where a batch of 2 leaves the
device mostly idle; close on a CPU). `verdict` compares them with this machine's free memory
and with the data: "refuse" when the memory cannot fit, "warn" when an epoch is long or the model has
far more parameters than the data has pixels.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from . import defenses as _defenses  # noqa: F401  (registers the structural defenses that model_from_config applies)
from .device import resolve_device, timed

PROBE_BATCH = 2
LONG_EPOCH_S = 600.0
PARAMS_PER_PIXEL_WARN = 10.0


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f}
        return info.get("MemAvailable", info.get("MemFree", 0))
    except OSError:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def estimate(model_cfg: dict, n_train: int, batch_size: int, device: str = "auto",
             probe_batch: int = PROBE_BATCH) -> dict:
    """Measured now: parameters, memory of one training step, seconds per step and per epoch."""
    from .models import model_from_config
    dev = resolve_device(device)
    model = model_from_config(model_cfg, phase="initial").to(dev).train()
    n_params = sum(p.numel() for p in model.parameters())
    c = model_cfg["in_chans"]
    h = model_cfg["img_size"]
    b = max(2, min(probe_batch, batch_size))
    x = torch.rand(b, c, h, h, device=dev) * 2 - 1
    y = torch.randint(0, model_cfg["num_classes"], (b,), device=dev)
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    def step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()  # warm-up; counts the saved activations once
    act_per_image = saved[0] / b
    step_s = timed(step, dev)
    bs = max(1, min(batch_size, n_train))
    steps = max(1, n_train // bs)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    memory = 4 * param_bytes + int(act_per_image * bs)  # weights, grads, 2 AdamW moments, activations
    per_step = step_s * bs / b  # time grows about linearly with the batch on a busy CPU
    return {"params": n_params, "device": str(dev), "memory_bytes": memory, "activation_bytes_per_image":
            int(act_per_image), "free_bytes": _free_memory(dev), "step_seconds": per_step,
            "epoch_seconds": per_step * steps, "steps_per_epoch": steps, "batch_size": bs, "n_train": n_train,
            "probe_batch": b, "image_shape": [c, h, h]}


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**28 else f"{n / 2**20:.0f} MB"


def _dur(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else (f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s")


def verdict(est: dict) -> tuple[str, str]:
    """("ok" | "warn" | "refuse", one line saying why, with the numbers)."""
    head = (f"{est['params'] / 1e6:.1f}M parameters; one training step of {est['batch_size']} images needs about "
            f"{_gb(est['memory_bytes'])} on {est['device']} ({_gb(est['free_bytes'])} free); an epoch of "
            f"{est['n_train']} images takes about {_dur(est['epoch_seconds'])} here (measured now)")
    if est["memory_bytes"] > 0.9 * est["free_bytes"]:
        return "refuse", head + ": too large for this device; choose a smaller model, batch or image size"
    pixels = est["n_train"] * est["image_shape"][0] * est["image_shape"][1] * est["image_shape"][2]
    notes = []
    if est["epoch_seconds"] > LONG_EPOCH_S:
        notes.append("an epoch takes long on this machine")
    if est["params"] > PARAMS_PER_PIXEL_WARN * pixels:
        notes.append(f"the model has {est['params'] / max(pixels, 1):.0f} parameters per training pixel, "
                     "so it will mostly memorise this data")
    if notes:
        return "warn", head + ": " + "; ".join(notes)
    return "ok", head
