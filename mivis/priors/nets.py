"""Small DCGAN-style generator and spectral-norm discriminator for 32 to 256 px faces.

Generator: z -> s0 x s0 map -> (upsample, 3x3 conv, BN, ReLU) blocks -> 3x3 conv -> tanh, where
s0 = 4 for the power-of-two sizes and 7 for 224 (= 7 x 2^5): 224 px targets get native 224 px
images, no 256 -> 224 resize (which would blur them and cost ~30% more compute per step). With
`num_classes` > 0 its BatchNorms are class-conditional (PLG-MI). Discriminator: stride-2 4x4
convs with LeakyReLU; a realness head, and optionally a class head (KEDMI: trained on the
target's soft labels) or a projection embedding (conditional, PLG-MI).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

RESOLUTIONS = (32, 64, 128, 224, 256)


def _plan(img_size: int) -> tuple[int, int]:
    """(side of the first / last feature map, number of 2x up- or down-sampling levels)."""
    if img_size not in RESOLUTIONS:
        raise ValueError(f"image size {img_size} is not supported by the GAN prior; allowed: {RESOLUTIONS}")
    s0 = 7 if img_size % 7 == 0 else 4
    return s0, int(math.log2(img_size // s0))


class CondBatchNorm(nn.Module):
    """BatchNorm whose scale and shift come from a class embedding (identity at initialisation)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = 1 + self.gain(y)[:, :, None, None]
        b = self.bias(y)[:, :, None, None]
        return self.bn(x) * g + b


class Generator(nn.Module):
    def __init__(self, z_dim: int = 100, img_size: int = 64, channels: int = 1, width: int = 32,
                 num_classes: int = 0):
        super().__init__()
        self.z_dim, self.img_size, self.channels, self.num_classes = z_dim, img_size, channels, num_classes
        self.s0, n = _plan(img_size)
        widths = [max(4, (width * 2 ** (n - 1)) >> i) for i in range(n + 1)]
        # 64 px, width 32: 256 (4x4) -> 128 -> 64 -> 32 -> 16 (64x64); 32 px: 128 -> 64 -> 32 -> 16;
        # 224 px: 512 (7x7) -> 256 -> 128 -> 64 -> 32 -> 16 (224x224)
        self.c0 = widths[0]
        self.fc = nn.Linear(z_dim, self.c0 * self.s0 ** 2)
        self.norms = nn.ModuleList([self._norm(widths[0])])
        self.convs = nn.ModuleList()
        for i in range(n):
            self.convs.append(nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=False))
            self.norms.append(self._norm(widths[i + 1]))
        self.out = nn.Conv2d(widths[-1], channels, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def _norm(self, c: int) -> nn.Module:
        return CondBatchNorm(c, self.num_classes) if self.num_classes else nn.BatchNorm2d(c)

    def _bn(self, i: int, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return torch.relu(self.norms[i](h, y) if self.num_classes else self.norms[i](h))  # Identity once folded

    @property
    def blocks(self) -> int:
        """Feature blocks: 0 = fc (the s0 x s0 map), 1..n = upsample + conv; their outputs can be searched."""
        return len(self.convs) + 1

    def head(self, z: torch.Tensor, block: int, y: torch.Tensor | None = None) -> torch.Tensor:
        """The output (after BN and ReLU) of feature block `block` for latents z."""
        if self.num_classes and y is None:
            raise ValueError("this generator is conditional: pass class labels y")
        h = self.fc(z).view(z.shape[0], self.c0, self.s0, self.s0)
        h = self._bn(0, h, y)
        for i, conv in enumerate(self.convs[:block]):
            h = self._bn(i + 1, conv(self.up(h)), y)
        return h

    def advance(self, h: torch.Tensor, block: int, y: torch.Tensor | None = None) -> torch.Tensor:
        """The output of feature block `block` + 1 from that of block `block`."""
        return self._bn(block + 1, self.convs[block](self.up(h)), y)

    def tail(self, h: torch.Tensor, block: int, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images from the output of feature block `block` (the rest of the generator)."""
        for i in range(block, len(self.convs)):
            h = self._bn(i + 1, self.convs[i](self.up(h)), y)
        return torch.tanh(self.out(h))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.tail(self.head(z, 0, y), 0, y)


class Discriminator(nn.Module):
    def __init__(self, img_size: int = 64, channels: int = 1, width: int = 32, num_classes: int = 0,
                 head: str = "none", sn: bool = True):
        """head: 'none' (realness only), 'classes' (KEDMI soft-label head), 'projection' (conditional)."""
        super().__init__()
        if head not in ("none", "classes", "projection"):
            raise ValueError(f"head {head!r}")
        wrap = spectral_norm if sn else (lambda m: m)
        s0, n = _plan(img_size)
        widths = [channels] + [width * 2 ** i * (2 if img_size == 32 else 1) for i in range(n)]
        # 64 px: 32 -> 64 -> 128 -> 256 at 4x4; 32 px: 64 -> 128 -> 256; 224 px: 32 ... 512 at 7x7
        layers = []
        for i in range(n):
            layers += [wrap(nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1)), nn.LeakyReLU(0.2)]
        self.trunk = nn.Sequential(*layers)
        self.num_features = widths[-1] * s0 ** 2
        self.real = wrap(nn.Linear(self.num_features, 1))
        self.head, self.num_classes = head, num_classes
        if head == "classes":
            self.classes = wrap(nn.Linear(self.num_features, num_classes))
        elif head == "projection":
            self.embed = wrap(nn.Embedding(num_classes, self.num_features))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).flatten(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *, with_features: bool = False):
        f = self.features(x)
        out = self.real(f).squeeze(1)
        if self.head == "projection":
            if y is None:
                raise ValueError("this discriminator is conditional: pass class labels y")
            out = out + (self.embed(y) * f).sum(1)
        return (out, f) if with_features else out

    def class_logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.classes(f)


def bake_spectral_norm(module: nn.Module) -> nn.Module:
    """Fold spectral normalisation into plain weights (for attacks: no power iteration, compile-friendly)."""
    from torch.nn.utils import parametrize
    for m in list(module.modules()):
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    return module


@torch.no_grad()
def fold_batchnorm(G: Generator) -> Generator:
    """Fold an unconditional generator's eval-mode BatchNorms into the preceding layer (exact; fewer
    memory passes per attack step). Conditional generators are returned unchanged."""
    if G.num_classes or G.training:
        return G
    layers = [G.fc] + list(G.convs)
    for i, (layer, bn) in enumerate(zip(layers, G.norms)):
        if not isinstance(bn, nn.BatchNorm2d):
            continue
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        if i == 0:  # fc output viewed as (c0, s0, s0): one scale per channel, s0^2 outputs each
            k = G.s0 ** 2
            sk, bk = scale.repeat_interleave(k), shift.repeat_interleave(k)
            layer.weight.mul_(sk[:, None])
            layer.bias.mul_(sk).add_(bk)
        else:
            layer.weight.mul_(scale[:, None, None, None])
            layer.bias = nn.Parameter(shift.clone(), requires_grad=False)
        G.norms[i] = nn.Identity()
    return G
