"""A principal-components prior of the public faces (probabilistic PCA; Tipping & Bishop 1999).

A GAN trained on ~200 public faces can express only part of the private faces (its "ceiling", see
`prior ceiling`); a linear prior spanned by the public faces' principal components expresses more of
them, at the price of blur. Fitted in seconds from the public identities only (with their mirror images
by default, which doubles the components the data supports):
  G(z) = clamp(mean + (z * sigma) @ basis, -1, 1),  z ~ N(0, I) of dimension `components`,
  D(x) = the PPCA log-density of x per component: -(|basis (x - mean) / sigma|^2 + |residual|^2 / var_res)
         / (2 * components), the prior term an attack with a discriminator term (GMI) maximises.
G exposes one feature block (the unclamped image) so IF-GMI can search the pixels near the linear face.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import sequential
from ..params import Param, ParamError, ParamSet

PCA_PARAMS = ParamSet([
    Param("components", int, 0, "principal components kept (0 = every component the public images support: "
          "their number minus one)", min=0, max=100000),
    Param("flip", bool, True, "add each public image's mirror image before fitting (twice the components)"),
    Param("seed", int, 0, "recorded for the registry (the fit itself is deterministic)", min=0, max=2**31 - 1),
    Param("device", str, "auto", "where to fit", choices=("auto", "cpu", "cuda")),
])

MAX_PIXELS = 3 * 256 * 256
RESIDUAL_FLOOR = 1e-3  # residual variance floor, as a fraction of the mean kept variance


class _Linear(nn.Module):
    """The fitted statistics (persistent buffers, so safetensors holds them); G and D share the layout."""

    def __init__(self, components: int, channels: int, img_size: int):
        super().__init__()
        d = channels * img_size * img_size
        self.shape = (channels, img_size, img_size)
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("basis", torch.zeros(components, d))
        self.register_buffer("sigma", torch.ones(components))
        self.register_buffer("residual_var", torch.ones(()))

    @property
    def components(self) -> int:
        return self.basis.shape[0]


class PCAGenerator(_Linear):
    num_classes = 0

    @property
    def z_dim(self) -> int:
        return self.components

    @property
    def blocks(self) -> int:
        return 1

    def head(self, z: torch.Tensor, block: int = 0, y: torch.Tensor | None = None) -> torch.Tensor:
        """The unclamped linear face (the generator's one feature block)."""
        b = self.basis.to(z.dtype)
        return (self.mean.to(z.dtype) + (z * self.sigma.to(z.dtype)) @ b).view(len(z), *self.shape)

    def tail(self, h: torch.Tensor, block: int = 0, y: torch.Tensor | None = None) -> torch.Tensor:
        return h.clamp(-1, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.tail(self.head(z))


class PCADiscriminator(_Linear):
    num_classes = 0

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(whitened coefficients z, squared residual norm) of images x."""
        d = x.flatten(1).float() - self.mean
        c = d @ self.basis.t()
        res = (d - c @ self.basis).pow(2).sum(1)
        return c / self.sigma, res

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *, with_features: bool = False):
        z, res = self.coefficients(x)
        out = -(z.pow(2).sum(1) + res / self.residual_var) / (2 * self.components)
        return (out, z) if with_features else out


def pca_net_config(p: dict, n_public: int, img_size: int, channels: int) -> dict:
    if channels * img_size * img_size > MAX_PIXELS:
        raise ParamError(f"a pca prior supports up to {MAX_PIXELS} values per image, not "
                         f"{channels} x {img_size} x {img_size}")
    supported = n_public * (2 if p["flip"] else 1) - 1
    k = p["components"] or supported
    if k > supported:
        raise ParamError(f"components: {k} asked, but {n_public} public images"
                         f"{' and their mirror images' if p['flip'] else ''} support at most {supported}")
    return {"type": "pca", "z_dim": k, "img_size": img_size, "channels": channels, "num_classes": 0,
            "conditional": False, "d_head": "none", "flip": bool(p["flip"])}


def build_pca_nets(cfg: dict) -> tuple[PCAGenerator, PCADiscriminator]:
    return (PCAGenerator(cfg["z_dim"], cfg["channels"], cfg["img_size"]),
            PCADiscriminator(cfg["z_dim"], cfg["channels"], cfg["img_size"]))


@torch.no_grad()
def fit_pca(G: PCAGenerator, D: PCADiscriminator, images, flip: bool, device, reporter) -> dict:
    """Fit both from the public images (read in batches); returns what the run records."""
    xs = [xb.float().to(device).flatten(1) for xb in sequential(images, 256, device)]
    reporter.check()
    x = torch.cat(xs)
    if flip:
        c, h, w = G.shape
        x = torch.cat([x, x.view(-1, c, h, w).flip(3).flatten(1)])
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    var = s.pow(2) / (len(x) - 1)
    k = G.components
    kept = var[:k].clamp_min(1e-12)
    rest = var[k:]
    residual = (rest.sum() / max(1, x.shape[1] - k)).clamp_min(RESIDUAL_FLOOR * kept.mean())
    for m in (G, D):
        m.mean.copy_(mean.cpu())
        m.basis.copy_(vh[:k].cpu())
        m.sigma.copy_(kept.sqrt().cpu())
        m.residual_var.copy_(residual.cpu())
    reporter.report(phase="fit", components=k)
    return {"components": k, "images": len(x), "explained_variance": round(float(kept.sum() / var.sum()), 4)}
