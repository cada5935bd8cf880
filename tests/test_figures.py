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


# --- likelihood histograms -------------------------------------------------------------------------------
def test_log_odds_separates_confident_reconstructions_that_share_the_top_bin():
    p = [0.951, 0.99, 0.999, 0.9999]  # all in the old 0.95-1 bin
    v = figures.log_odds(p)
    assert np.all(np.diff(v) > 1.5)  # over a log-odds unit apart: separate bins (one bin of p_T before)
    assert figures.log_odds([1.0])[0] == pytest.approx(13.8, abs=0.1)  # a float32 softmax's 1.0 stays finite


def test_histogram_runs_are_side_by_side_bars_with_the_same_bins():
    groups = [{"label": "full", "likelihood": [0.99, 0.999, 0.5, 0.9999], "correct": [True, True, False, False]},
              {"label": "RoLSS", "likelihood": [0.99, 0.9, 0.1, 0.999], "correct": [False, True, False, False]}]
    fig = figures.likelihood_histogram_figure(groups, split=True)
    assert fig.layout.barmode == "group"  # never overlaid: one run cannot hide another
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 4 and all(list(b.x) == list(bars[0].x) for b in bars)
    assert sum(sum(v or 0 for v in b.y) for b in bars) == 8
    wrong = [b for b in bars if "wrong" in b.name]
    assert all(b.marker.pattern.shape == "/" and b.marker.line.width > 0 for b in wrong)  # outlined, hatched
    assert "log-odds" in fig.layout.xaxis.title.text and "confidence" in fig.layout.xaxis.title.text
    assert "0.99" in list(fig.layout.xaxis.ticktext)  # ticks read as p_T


# --- Fisher information ------------------------------------------------------------------------------------
DEMO_CLS = [0.94283, 1e-05, 0.00047, 0.02495, 0.02569]   # the shipped demo's shape: conv1 holds ~94%
DEMO_MI = [0.9103, 2e-05, 0.00129, 0.04103, 0.03186]


def test_fisher_figure_is_log_scaled_per_loss_with_the_ratio():
    layers = ["conv1", "layer1", "layer2", "layer3.downsample", "head"]
    fig = figures.fisher_figure(layers, {"classification": DEMO_CLS, "model inversion": DEMO_MI})
    assert fig.layout.yaxis.type == "log"
    bars = [t for t in fig.data if t.type == "bar"]
    assert [round(sum(b.y), 6) for b in bars] == [1.0, 1.0]  # each loss normalised on its own
    ratio = next(t for t in fig.data if t.type == "scatter")
    assert ratio.y[1] == pytest.approx(2.0, rel=0.05) and ratio.y[2] == pytest.approx(2.74, rel=0.05)
    assert list(fig.layout.xaxis2.tickvals) == layers  # every layer named, none skipped
    assert list(fig.layout.yaxis2.ticktext)[:3] == ["0.01×", "0.02×", "0.05×"]  # round ratio ticks
    lin = figures.fisher_figure(layers, {"classification": DEMO_CLS, "model inversion": DEMO_MI}, log=False)
    assert lin.layout.yaxis.type == "linear" and lin.layout.yaxis.rangemode == "tozero"  # the page's default


def test_fisher_ratio_handles_zero_shares():
    assert figures.fisher_ratio([0.5, 0.0, 0.5], [0.25, 0.25, 0.5]) == [2.0, None, 1.0]


def test_side_by_side_plots_share_one_axis():
    lo, hi = figures.shared_log_range([4e-4, 1e-2], [3e-7, 0.9])
    assert lo <= 3e-7 and hi >= 0.9
    assert figures.shared_range([400e-6, 1e-3], [0.004]) == pytest.approx((0.0, 0.004 * 1.05))


# --- verdicts ----------------------------------------------------------------------------------------------
def test_verdicts_are_colour_and_a_word_with_a_symbol():
    face = np.full((32, 32), 128, np.uint8)
    right, wrong = figures.framed(face, True, 96), figures.framed(face, False, 96)
    assert right.getpixel((0, 0)) != wrong.getpixel((0, 0))  # frame colours differ
    assert figures.verdict_text(True) == "✓ right"
    assert figures.verdict_text(False, "s7") == "✗ wrong: judged as s7"


# --- Home -----------------------------------------------------------------------------------------------
def test_home_shows_both_models_numbers_and_who_the_judge_picked(ws):
    pytest.importorskip("streamlit")
    from pathlib import Path

    from streamlit.testing.v1 import AppTest
    app = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    app.run()
    assert not app.exception
    md = "\n".join(m.value for m in app.markdown)
    caps = "\n".join(str(c.value) for c in app.caption)
    assert "| Full model (no defense) |" in md and "| RoLSS" in md  # one table row per model
    assert "Natural accuracy" in md and "Attack accuracy, top-1" in md
    assert "only" in md or "same identities" in md  # says which model the faces come from
    assert "✗ wrong: judged as s7" in caps and "✓ right" in caps
    image_captions = "\n".join(i.caption for e in app.get("image") for i in e.proto.imgs)
    assert "this is s7" in image_captions and "**Real face**" in md  # who "wrong: s7" is, beside the real face


# --- Layers: two targets side by side share their axes -------------------------------------------------------
@pytest.fixture
def world(tmp_path, monkeypatch):
    from ui_world import world_copy

    from mivis import ui
    w = world_copy(tmp_path / "world")
    monkeypatch.setenv("MIVIS_WORKSPACE", str(w["path"]))
    ui.shutdown_managers()
    yield w
    ui.shutdown_managers()


def test_layers_side_by_side_share_every_y_axis(world):
    import json
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from mivis.analysis import layers_run
    from mivis.runs import Workspace
    layers_run(world["rolss"], world["attack_rolss"], {"snapshots": 0, "mi_samples": 6, "fi_samples": 12,
                                                       "device": "cpu"}, workspace=Workspace(world["path"]))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.query_params["target"] = world["full"]
    at.query_params["vs"] = world["rolss"]
    at.switch_page("pages/layers.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    fisher = [s for s in specs if "Fisher information per layer" in str(s["layout"].get("title"))]
    flows = [s for s in specs if "Gradient flow" in str(s["layout"].get("title"))]
    assert len(fisher) == 2 and len(flows) == 2
    assert fisher[0]["layout"]["yaxis"]["type"] == "linear"  # zero-based bars; log is the page's toggle
    assert fisher[0]["layout"]["yaxis"]["range"] == fisher[1]["layout"]["yaxis"]["range"]
    assert fisher[0]["layout"]["yaxis"]["range"][0] == 0
    assert flows[0]["layout"]["yaxis"]["range"] == flows[1]["layout"]["yaxis"]["range"]
    assert "share every y-axis" in "\n".join(str(c.value) for c in at.caption)


# --- words ------------------------------------------------------------------------------------------------
def test_words_plain_first_symbol_after():
    from mivis import ui
    from mivis.params import Param
    from mivis.ui.words import _label
    assert _label(Param("id_weight", float, 100.0, "")) == "Weight of the identity loss (λ, id_weight)"
    assert _label(Param("fi_samples", int, 8, "")).endswith("(fi_samples)")
    assert ui.choice_words("ce") == "cross-entropy (ce)"
    assert ui.settings_differ(1) == "1 setting differs" and ui.settings_differ(2) == "2 settings differ"
    assert ui.progress_text({"phase": "epoch", "epoch": 1, "epochs": 30}) == "epoch 1/30"
    name = "ResNet-18 ORL 32 px (classroom) (shipped)"
    assert ui.clip(name, 48) == name and ui.clip(name, 20) == "ResNet-18 ORL 32 px…"  # cut, and said to be


def test_target_success_is_a_percentage_on_every_page():
    from mivis import ui
    assert ui.metric_is_fraction("target_success") and not ui.metric_is_fraction("knn_dist")
    assert ui.metric_text({"value": 1.0}, ui.metric_is_fraction("target_success")) == "100%"


def test_resolved_says_which_run_leaks_less():
    from mivis import ui
    d = {"value": -0.11, "lo": -0.2, "hi": -0.03, "n": 20, "resolved": True}
    assert "A leaks 11 pp less than B" in ui.paired_words(d)
    d = {"value": 0.11, "lo": 0.03, "hi": 0.2, "n": 20, "resolved": True}
    assert "B leaks 11 pp less than A" in ui.paired_words(d)
    d = {"value": 0.02, "lo": -0.1, "hi": 0.1, "n": 20, "resolved": False}
    assert "not resolved" in ui.paired_words(d) and "neither" in ui.paired_words(d)


def test_a_tall_reconstruction_grid_is_paged(tmp_path):
    """100 identities made a 4,800 px image; now 10 rows a page with a page picker."""
    from streamlit.testing.v1 import AppTest

    from mivis.grid import grid_png
    png = tmp_path / "grid.png"
    png.write_bytes(grid_png(torch.zeros(100 * 6, 1, 32, 32), 6, scale=2))  # 100 rows of 64 px (+2 pad)

    def page(path: str):
        from mivis import ui
        ui.png_row_pages(path, 66, key="rows")

    at = AppTest.from_function(page, args=(str(png),), default_timeout=60)
    at.run()
    assert not at.exception
    assert at.number_input(key="rows").max == 10
    assert "Rows 1-10 of 100" in at.caption[0].value and not at.get("image")[0].proto.imgs[0].caption
    at.number_input(key="rows").set_value(10).run()
    assert "Rows 91-100 of 100" in at.caption[0].value


# --- stage diagram -----------------------------------------------------------------------------------------
def _desc(arch: str) -> dict:
    from mivis.models import build_classifier
    from mivis.surgery import describe
    with torch.device("meta"):
        return describe(build_classifier(arch, 5, 1, 32))


def test_stage_diagram_wraps_long_models_one_row_per_stage():
    from mivis import ui
    dot = ui.stage_dot(_desc("densenet121"))
    assert "rankdir=TB" in dot and dot.count("rank=same") == 4  # 4 dense blocks, one row each
    assert "rankdir=LR" in ui.stage_dot(_desc("resnet18"), wrap_over=12)


def test_architecture_page_diagram_shows_tldmi_frozen_layers(ws):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    for k, v in {"dataset": "synthetic", "image_size": "32", "n_private": "6", "test_per_identity": "2",
                 "use_tldmi": "true", "tldmi_freeze": "8"}.items():
        at.query_params[k] = v
    at.switch_page("pages/architecture.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    dot = at.get("graphviz_chart")[0].proto.spec
    assert 'stem [label="stem\\nfrozen"' in dot
    assert dot.count("frozen\", fillcolor=\"#d9d9d9\"") == 4  # the stem, layer1's two blocks, layer2's first
    assert "1 of 2 frozen" in dot
