"""Figure builders shared by the pages: plotly figures and PIL images, without streamlit, so each one
can be unit-tested. mivis/ui/ renders them (`ui.plot`, `st.image`)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
RIGHT_COLOR = "#1b7f3b"   # green frame + a check mark: the judge recognised the attacked identity
WRONG_COLOR = "#c62828"   # red frame + a cross: judged as someone else


# --- images ----------------------------------------------------------------------------------------------
def to_display(img) -> np.ndarray:
    """A [-1, 1] float image (C, H, W) -> uint8 (H, W) or (H, W, 3) for display."""
    a = np.asarray(img, dtype=np.float32)
    u8 = ((np.clip(a, -1, 1) + 1) * 127.5).round().astype(np.uint8)
    return u8[0] if u8.shape[0] == 1 else u8.transpose(1, 2, 0)


def overlay(img, amap, size: int = 192, alpha: float = 0.65):
    """Grey image with a signed attribution map on top (red = raises the class score, blue = lowers it).

    The colour saturates at the map's 99th percentile of |value| (`display_scale`), so one extreme
    pixel (e.g. the corner a 32 px ResNet reads through its shortcuts) no longer washes out the rest."""
    from PIL import Image

    from .analysis.attributions import display_scale
    base = to_display(img)
    grey = base if base.ndim == 2 else base.mean(2).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, 2).astype(np.float32) * 0.8
    m = np.asarray(amap, dtype=np.float32)
    scale, _ = display_scale(m)
    m = np.clip(m / scale, -1, 1)
    color = np.zeros_like(rgb)
    color[..., 0] = np.clip(m, 0, 1) * 255
    color[..., 2] = np.clip(-m, 0, 1) * 255
    w = (np.abs(m) * alpha)[..., None]
    out = (rgb * (1 - w) + color * w).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(out)
    f = max(1, size // max(im.size))
    return im.resize((im.size[0] * f, im.size[1] * f), Image.NEAREST)


def framed(img, correct: bool | None, size: int = 96, border: int = 4):
    """A face upscaled to about `size` px inside a coloured frame: green for right, red for wrong,
    grey when there is no verdict (the caption carries the word and the symbol as well)."""
    from PIL import Image, ImageOps
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    im = Image.fromarray(arr).convert("RGB")
    f = max(1, (size - 2 * border) // max(im.size))
    im = im.resize((im.size[0] * f, im.size[1] * f), Image.NEAREST)
    color = "#9e9e9e" if correct is None else (RIGHT_COLOR if correct else WRONG_COLOR)
    return ImageOps.expand(im, border=border, fill=color)


def verdict_text(correct: bool | None, predicted: str | None = None) -> str:
    """'✓ right' / '✗ wrong: s7' (a word and a symbol, never the colour alone)."""
    if correct is None:
        return ""
    if correct:
        return "✓ right"
    return "✗ wrong" + (f": judged as {predicted}" if predicted else "")


# --- likelihood histograms -------------------------------------------------------------------------------
LOGIT_CLIP = 1e-6   # p_T is clipped to [1e-6, 1 - 1e-6] before the log-odds (a float32 softmax gives 1.0)


def log_odds(p) -> np.ndarray:
    """log(p / (1 - p)) in natural units, p clipped to [1e-6, 1 - 1e-6] (so +-13.8 at most)."""
    q = np.clip(np.asarray(p, dtype=np.float64), LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(q) - np.log1p(-q)


def _odds_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    probs = [1e-6, 1e-4, 0.01, 0.1, 0.5, 0.9, 0.99, 0.9999, 1 - 1e-6]
    texts = ["0.000001", "0.0001", "0.01", "0.1", "0.5", "0.9", "0.99", "0.9999", "0.999999"]
    vals = [float(log_odds(p)) for p in probs]
    keep = [(v, t) for v, t in zip(vals, texts) if lo - 1 <= v <= hi + 1]
    return [v for v, _ in keep], [t for _, t in keep]


def likelihood_histogram_figure(groups: list[dict], *, split: bool = True, bins: int = 24):
    """The paper's Fig. 2 on a scale that separates confident reconstructions: the target's
    confidence in the attacked identity as log-odds, log(p_T / (1 - p_T)), ticks labelled with p_T.
    Runs (and, split, correct / wrong) are side-by-side bars with the same bins, never overlaid.

    groups: [{"label": str, "likelihood": [floats], "correct": [bools]}]."""
    import plotly.graph_objects as go
    allv = np.concatenate([log_odds(g["likelihood"]) for g in groups if len(g["likelihood"])] or [np.zeros(1)])
    lo, hi = float(np.floor(allv.min())), float(np.ceil(allv.max()))
    if hi - lo < 2:
        lo, hi = lo - 1, hi + 1
    size = (hi - lo) / bins
    edges = lo + size * np.arange(bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    for i, g in enumerate(groups):
        v = log_odds(g["likelihood"])
        ok = list(g.get("correct") or [])
        color = PALETTE[i % len(PALETTE)]
        parts = ([(True, "judged right", ""), (False, "judged wrong", "/")]
                 if split and len(ok) == len(v) else [(None, "", "")])
        for want, name, pattern in parts:
            sel = v if want is None else v[np.array(ok, dtype=bool) == want]
            counts, _ = np.histogram(sel, bins=edges)
            label = f"{g['label']}" + (f": {name}" if name else "") + f" ({len(sel)})"
            fig.add_trace(go.Bar(
                x=centres, y=[int(c) if c else None for c in counts],  # empty bins: no outline dash at 0
                width=size * 0.9 / max(1, len(groups) * len(parts)), name=label,
                marker=dict(color=color if want is not False else "rgba(255,255,255,0)",
                            pattern=dict(shape=pattern, fgcolor=color) if pattern else None,
                            line=dict(width=1.5, color=color)),
                legendgroup=g["label"],
                hovertemplate=f"{label}<br>log-odds %{{x:.1f}}: %{{y}} reconstructions<extra></extra>"))
    tv, tt = _odds_ticks(lo, hi)
    fig.update_layout(barmode="group", bargap=0.05, title="Target's confidence in the attacked identity",
                      xaxis_title="target's confidence p_T, as log-odds log(p_T / (1 − p_T)); ticks show p_T",
                      yaxis_title="reconstructions", legend=dict(orientation="h", y=-0.3))
    fig.update_xaxes(tickvals=tv, ticktext=tt, range=[lo, hi])
    return fig


# --- Fisher information per layer ------------------------------------------------------------------------
ROUND_LOG_TICKS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]  # a ratio axis's ticks: 1-2-5


def fisher_shares(values: list[float]) -> list[float]:
    """Each loss normalised on its own: F_l / sum over layers of F_l (a share per layer)."""
    total = float(sum(v for v in values if v and v > 0))
    return [(v / total if total > 0 and v and v > 0 else 0.0) for v in values]


def fisher_ratio(mi: list[float], cls: list[float]) -> list[float | None]:
    """Per layer: MI share / classification share (> 1: the layer matters more for the attack
    than for classification, relative to each loss's total). None where a share is 0."""
    a, b = fisher_shares(mi), fisher_shares(cls)
    return [(x / y if x > 0 and y > 0 else None) for x, y in zip(a, b)]


def fisher_figure(layers: list[str], series: dict[str, list[float]], *, title: str = "Fisher information per layer",
                  log: bool = True, ratio: bool = True, y_range: tuple[float, float] | None = None,
                  ratio_range: tuple[float, float] | None = None, compact: bool = False):
    """Share of each loss's Fisher information per layer (each loss normalised on its own) as grouped
    bars on a log axis, and, with two losses, the MI / classification ratio per layer on a second
    axis (a line: above 1 = relatively more information for the attack than for classification)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    names = list(series)
    shares = {n: fisher_shares(series[n]) for n in names}
    two = ratio and len(names) == 2
    fig = make_subplots(rows=2 if two else 1, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[0.6, 0.4] if two else [1.0])
    for i, n in enumerate(names):
        ys = [v if v > 0 else None for v in shares[n]]
        fig.add_trace(go.Bar(x=layers, y=ys, name=f"{n} (share of its own total)", marker_color=PALETTE[i % 6],
                             hovertemplate="%{x}: %{y:.2%}<extra>" + n + "</extra>"), row=1, col=1)
    if two:
        mi_name = next((n for n in names if "inversion" in n.lower() or n.lower().startswith("mi")), names[1])
        cls_name = next(n for n in names if n != mi_name)
        r = fisher_ratio(series[mi_name], series[cls_name])
        fig.add_trace(go.Scatter(x=layers, y=r, mode="lines+markers", name="model inversion ÷ classification",
                                 line=dict(color="#444444"), hovertemplate="%{x}: %{y:.2f}x<extra></extra>"),
                      row=2, col=1)
        fig.add_hline(y=1, line=dict(color="#999999", dash="dot"), row=2, col=1)
        fig.update_yaxes(title_text="MI ÷ class.", type="log", row=2, col=1, title_standoff=4,
                         range=[math.log10(ratio_range[0]), math.log10(ratio_range[1])] if ratio_range else None,
                         tickvals=ROUND_LOG_TICKS, ticktext=[f"{v:g}×" for v in ROUND_LOG_TICKS])
    # a short title (a long one ran into the ratio axis's) and powers of ten, not SI prefixes ("100µ")
    fig.update_yaxes(title_text="share" + (" (log)" if log else ""), type="log" if log else "linear",
                     exponentformat="power", row=1, col=1, **({} if log else {"rangemode": "tozero",
                                                                              "tickformat": ".0%"}))
    if y_range is not None:
        fig.update_yaxes(range=[math.log10(y_range[0]), math.log10(y_range[1])] if log else list(y_range),
                         row=1, col=1)
    fig.update_xaxes(tickangle=-90 if compact else -60, automargin=True, tickmode="array", tickvals=list(layers),
                     ticktext=list(layers), tickfont=dict(size=9 if compact else 11),
                     row=2 if two else 1, col=1)  # every layer named (plotly skips every other one when narrow)
    fig.update_xaxes(title_text="layer (input → output)", row=2 if two else 1, col=1)
    fig.update_layout(barmode="group", title=dict(text=title, y=0.98, yanchor="top"),
                      legend=dict(orientation="h", y=1.01, yanchor="bottom", x=0, font=dict(size=11)),
                      margin=dict(l=10, r=10, t=110, b=10))
    return fig


def shared_log_range(*value_lists: list[float], floor: float = 1e-12) -> tuple[float, float] | None:
    """(lo, hi) covering every positive value of every list, for side-by-side plots on one axis."""
    vals = [v for vs in value_lists for v in vs if v is not None and v > floor]
    if not vals:
        return None
    return min(vals) / 2, max(vals) * 2


def shared_range(*value_lists: list[Any], pad: float = 0.05) -> tuple[float, float] | None:
    """(lo, hi) covering every finite value of every list (linear axis), 0 included."""
    vals = [float(v) for vs in value_lists for v in vs if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    lo, hi = min(0.0, min(vals)), max(vals)
    span = (hi - lo) or 1.0
    return lo, hi + pad * span
