"""Attribution maps for the attacked class (captum): occlusion, integrated gradients and Grad-CAM.

Every method returns float32 arrays of the input's spatial shape (H, W), ready to overlay on the image.

Why the maps used to be one red corner pixel (measured on the classroom ResNet-18, ORL 32 px): the
target's gradient w.r.t. the input really is concentrated in the top-left corner, 27x the median pixel
averaged over 60 private faces, the same after flipping the faces left-right, and near zero in the
bottom-right. The cause is the architecture, not captum: timm ResNets downsample their shortcuts with
1x1 stride-2 convolutions that read only the top-left pixel of every 2x2 cell, so at 32 px the chain of
three such shortcuts ends in the image's top-left corner (detaching those three shortcuts brings the
corner down to 0.8x the median). The model uses that path: greying the 4x4 corner lowered the class
score by 3.0 logits for one identity, more than greying the centre of the face. So the maps keep the
corner, but they no longer let it hide the rest:
- the display scale saturates at a high percentile of |map| (`display_scale`), not at the maximum;
- occlusion (grey out a patch, measure the drop of the class score) is offered first: its patches
  average the corner with its neighbours and its values are in logits, which a person can read;
- Grad-CAM uses the output of the last block whose map is at least 4x4 (the usual choice), not an
  inner convolution before the block's shortcut is added.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("occlusion", "integrated_gradients", "grad_cam")
METHOD_LABELS = {"occlusion": "occlusion", "integrated_gradients": "integrated gradients",
                 "grad_cam": "Grad-CAM"}
DISPLAY_PERCENTILE = 99.0


def cam_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module]:
    """(name, module) of the last module, in forward order, whose 4-D output is at least 4x4: a stage
    or block output (a container finishes after its children), where Grad-CAM is usually taken. The
    deepest maps of small faces are 1x1 or 2x2, where Grad-CAM degenerates to a constant."""
    names = {m: n for n, m in model.named_modules()}
    fired: list[tuple[nn.Module, int]] = []
    hooks = [m.register_forward_hook(lambda mod, a, o: fired.append((mod, min(o.shape[-2:])))
                                     if torch.is_tensor(o) and o.dim() == 4 else None)
             for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    good = [m for m, s in fired if s >= 4] or [m for m, _ in fired]
    if not good:
        raise ValueError("Grad-CAM needs a layer with a spatial map; this model has none (use occlusion)")
    return names[good[-1]], good[-1]


def occlusion_window(size: int) -> tuple[int, int]:
    """(patch side, stride) for an image of side `size`: an eighth of the side (at least 3 px), half
    that as the stride, so every pixel is covered by about four patches."""
    patch = max(3, size // 8)
    return patch, max(1, patch // 2)


def attribute(model: nn.Module, images: torch.Tensor, target: torch.Tensor | int,
              method: str = "occlusion", steps: int = 32) -> np.ndarray:
    """Attribution maps (N, H, W) for class `target` of each image in [-1, 1] (N, C, H, W).

    occlusion: drop of the class logit when a patch is set to mid-grey (0), averaged over the patches
    covering each pixel (positive = the patch raises the score). integrated_gradients: from a mid-grey
    baseline, summed over channels. grad_cam: ReLU'd Grad-CAM upsampled to the image."""
    from captum.attr import IntegratedGradients, LayerGradCam, Occlusion
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    model = model.eval()
    device = next(model.parameters()).device
    x = images.to(device=device, dtype=torch.float32)
    tgt = torch.as_tensor(target, device=device).expand(len(x)) if not torch.is_tensor(target) or \
        target.dim() == 0 else target.to(device)
    if method == "occlusion":
        patch, stride = occlusion_window(min(x.shape[-2:]))
        attr = Occlusion(model).attribute(x, sliding_window_shapes=(x.shape[1], patch, patch),
                                          strides=(x.shape[1], stride, stride), baselines=0.0, target=tgt,
                                          perturbations_per_eval=16)
        maps = attr[:, 0]  # the window spans every channel: each channel holds the same value
    elif method == "integrated_gradients":
        ig = IntegratedGradients(model)
        # baseline: a mid-grey image (0 in [-1, 1] units), the usual neutral choice for faces
        attr = ig.attribute(x, baselines=torch.zeros_like(x), target=tgt, n_steps=steps,
                            internal_batch_size=max(1, len(x)))
        maps = attr.sum(dim=1)
    else:
        cam = LayerGradCam(model, cam_layer(model, x)[1])
        a = cam.attribute(x, target=tgt, relu_attributions=True)
        maps = F.interpolate(a, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    out = maps.detach().float().cpu().numpy()
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def display_scale(amap: np.ndarray, percentile: float = DISPLAY_PERCENTILE) -> tuple[float, int]:
    """(scale, pixels above it) for one map: the `percentile` of |map| over its nonzero pixels, so a
    handful of extreme pixels saturate instead of washing out the rest. Falls back to the maximum
    when the percentile is 0 (a map with almost every pixel 0)."""
    a = np.abs(np.asarray(amap, dtype=np.float64)).ravel()
    nz = a[a > 0]
    if len(nz) == 0:
        return 1.0, 0
    scale = float(np.percentile(nz, percentile, method="lower")) or float(nz.max())
    return scale, int((a > scale * (1 + 1e-9)).sum())


def normalise_for_overlay(maps: np.ndarray, percentile: float = DISPLAY_PERCENTILE) -> np.ndarray:
    """Scale each map to [-1, 1] by its `display_scale` (sign kept: red = for, blue = against);
    the few pixels beyond the scale are clipped to +-1."""
    out = np.empty_like(np.asarray(maps, dtype=np.float32))
    for i, m in enumerate(maps):
        s, _ = display_scale(m, percentile)
        out[i] = np.clip(m / s, -1, 1)
    return out


def corner_share(amap: np.ndarray, frac: float = 0.125) -> float:
    """Share of |map| in the top-left corner square of side `frac` x the image (0.125: 4x4 at 32 px),
    whose area share is frac**2 (1.6%)."""
    a = np.abs(np.asarray(amap, dtype=np.float64))
    k = max(1, int(round(a.shape[0] * frac)))
    total = a.sum()
    return float(a[:k, :k].sum() / total) if total > 0 else 0.0
