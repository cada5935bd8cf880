"""Attribution maps for the attacked class with captum: integrated gradients and Grad-CAM.

Both return float32 arrays of the input's spatial shape (H, W), ready to overlay on the image.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("integrated_gradients", "grad_cam")


def _cam_layer(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """The last conv whose output map is at least 4x4 (the deepest maps of small faces are 1x1 or
    2x2, where Grad-CAM degenerates to a constant)."""
    sizes: dict[nn.Module, int] = {}
    hooks = [m.register_forward_hook(lambda mod, a, o: sizes.__setitem__(mod, min(o.shape[-2:])))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    good = [m for m, s in sizes.items() if s >= 4] or list(sizes)
    if not good:
        raise ValueError("Grad-CAM needs a convolutional layer; this model has none (use integrated_gradients)")
    return good[-1]


def attribute(model: nn.Module, images: torch.Tensor, target: torch.Tensor | int,
              method: str = "integrated_gradients", steps: int = 32) -> np.ndarray:
    """Attribution maps (N, H, W) for class `target` of each image in [-1, 1] (N, C, H, W)."""
    from captum.attr import IntegratedGradients, LayerGradCam
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    model = model.eval()
    device = next(model.parameters()).device
    x = images.to(device=device, dtype=torch.float32)
    tgt = torch.as_tensor(target, device=device).expand(len(x)) if not torch.is_tensor(target) or \
        target.dim() == 0 else target.to(device)
    if method == "integrated_gradients":
        ig = IntegratedGradients(model)
        # baseline: a mid-grey image (0 in [-1, 1] units), the usual neutral choice for faces
        attr = ig.attribute(x, baselines=torch.zeros_like(x), target=tgt, n_steps=steps,
                            internal_batch_size=max(1, len(x)))
        maps = attr.sum(dim=1)
    else:
        cam = LayerGradCam(model, _cam_layer(model, x))
        a = cam.attribute(x, target=tgt, relu_attributions=True)
        maps = F.interpolate(a, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    out = maps.detach().float().cpu().numpy()
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def normalise_for_overlay(maps: np.ndarray) -> np.ndarray:
    """Scale each map to [-1, 1] by its largest magnitude (sign kept: red = for, blue = against)."""
    scale = np.abs(maps).reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return maps / np.where(scale > 0, scale, 1.0)
