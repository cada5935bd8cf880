"""Figure builders (mivis/figures.py) and attribution maps a person can read (issue 17, plots)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mivis import figures
from mivis.analysis.attributions import attribute, cam_layer, corner_share, display_scale, normalise_for_overlay

SQ = (slice(18, 26), slice(14, 22))  # where the planted signal sits: an 8x8 square, 6% of a 32x32 image


class _Block(torch.nn.Module):
    """A ResNet basic block in miniature, with the same 1x1 stride-2 shortcut that reads the top-left
    pixel of every 2x2 cell (the cause of the corner peak on small images)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, 2, 1)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1)
        self.down = torch.nn.Conv2d(cin, cout, 1, 2)

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.down(x))


def _mini_resnet() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, 2, 1), torch.nn.ReLU(), _Block(8, 8), _Block(8, 16),
                               _Block(16, 16), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(16, 2))


@pytest.fixture(scope="module")
def planted_resnet():
    """A 32 px miniature ResNet (stride 32, like ResNet-18's: the shortcut chain ends in the top-left
    corner) trained to tell class 1 (a bright square at SQ) from class 0 (no square) in noise."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    n = 128
    x = torch.rand(n, 1, 32, 32, generator=g) * 0.6 - 0.8
    y = torch.arange(n) % 2
    x[y == 1, :, SQ[0], SQ[1]] = 0.9
    m = _mini_resnet()
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for _ in range(20):
        for i in range(0, n, 32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        assert (m(x).argmax(1) == y).float().mean() > 0.95  # it learned the square
    return m, x[y == 1][:4]


@pytest.mark.parametrize("method", ["occlusion", "integrated_gradients"])
def test_attribution_highlights_the_planted_signal_not_the_corner(planted_resnet, method):
    m, xs = planted_resnet
    maps = attribute(m, xs, 1, method, steps=16)
    area = 64 / 1024
    for a in np.abs(maps):
        share = a[SQ].sum() / a.sum()
        assert share > 3 * area, (method, share)            # the square holds far more than its area
        assert corner_share(a) < share / 2, (method, corner_share(a), share)


def test_grad_cam_uses_a_block_output_of_at_least_4x4():
    from mivis.models import build_classifier
    m = build_classifier("resnet18", 3, 1, 32).eval()
    name, _ = cam_layer(m, torch.zeros(1, 1, 32, 32))
    assert name == "body.layer2"  # 4x4 at 32 px; layer3 is 2x2; not an inner conv before the shortcut add


def test_display_scale_keeps_the_map_readable_beside_one_extreme_pixel():
    a = np.zeros((32, 32), np.float32)
    a[SQ] = 1.0
    a[0, 0] = 235.0  # one corner pixel 235x the signal, as measured on the classroom ResNet-18
    scale, saturated = display_scale(a)
    assert saturated == 1 and scale == pytest.approx(1.0)
    norm = normalise_for_overlay(a[None])[0]
    assert norm[SQ].min() == pytest.approx(1.0) and norm[0, 0] == 1.0  # max-normalised, the square would be 0.004
    img = np.zeros((1, 32, 32), np.float32)
    rgb = np.asarray(figures.overlay(img, a, size=32)).astype(float)
    red = rgb[..., 0] - rgb[..., 2]
    assert red[SQ].mean() > 80 and abs(red[8, 8]) < 1  # the square shows in red, the empty middle stays grey
