"""Minimal SVG charts for the generated report (no plotting dependency; text files diff well)."""
from __future__ import annotations

from html import escape

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _frame(w: int, h: int, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'font-family="sans-serif" font-size="11"><rect width="{w}" height="{h}" fill="white"/>'
            f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>'
            + "".join(body) + "</svg>")


def bars(labels: list[str], values: list[float], lo: list[float] | None = None, hi: list[float] | None = None,
         title: str = "", ylabel: str = "", ymax: float | None = None, colors: list[str] | None = None,
         ref: float | None = None) -> str:
    """Vertical bars with optional 95% interval whiskers and a dashed reference line (e.g. chance)."""
    n = max(1, len(values))
    w, h, left, bottom, top = max(360, 60 + 48 * n), 380, 50, 160, 30
    vals = [v if v is not None else 0.0 for v in values]
    ymax = ymax or max([*(hi or []), *vals, 1e-9]) * 1.1
    sy = lambda v: top + (h - top - bottom) * (1 - v / ymax)
    bw = (w - left - 10) / n
    body = [f'<line x1="{left}" y1="{sy(0)}" x2="{w - 10}" y2="{sy(0)}" stroke="black"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{sy(0)}" stroke="black"/>',
            f'<text x="12" y="{(top + sy(0)) / 2}" transform="rotate(-90 12 {(top + sy(0)) / 2})" '
            f'text-anchor="middle">{escape(ylabel)}</text>']
    for t in range(5):
        v = ymax * t / 4
        body.append(f'<text x="{left - 4}" y="{sy(v) + 4}" text-anchor="end">{v:.2g}</text>')
    for i, v in enumerate(vals):
        x = left + i * bw + bw * 0.15
        c = (colors or PALETTE)[i % len(colors or PALETTE)]
        body.append(f'<rect x="{x:.1f}" y="{sy(v):.1f}" width="{bw * 0.7:.1f}" height="{sy(0) - sy(v):.1f}" fill="{c}"/>')
        if lo is not None and hi is not None and lo[i] is not None:
            cx = x + bw * 0.35
            body.append(f'<line x1="{cx:.1f}" y1="{sy(lo[i]):.1f}" x2="{cx:.1f}" y2="{sy(hi[i]):.1f}" stroke="black"/>')
            for yv in (lo[i], hi[i]):
                body.append(f'<line x1="{cx - 5:.1f}" y1="{sy(yv):.1f}" x2="{cx + 5:.1f}" y2="{sy(yv):.1f}" stroke="black"/>')
        lx, ly = x + bw * 0.35, sy(0) + 10
        body.append(f'<text x="{lx:.1f}" y="{ly:.1f}" transform="rotate(40 {lx:.1f} {ly:.1f})">{escape(labels[i])}</text>')
    if ref is not None:
        body.append(f'<line x1="{left}" y1="{sy(ref):.1f}" x2="{w - 10}" y2="{sy(ref):.1f}" stroke="gray" '
                    f'stroke-dasharray="4 3"/>')
    return _frame(w, h, body, title)


def histograms(edges: list[float], series: list[tuple[str, list[int]]], title: str = "",
               xlabel: str = "", density: bool = True) -> str:
    """Overlaid step histograms on shared bins (counts, or fractions of each series when density)."""
    w, h, left, bottom, top = 520, 300, 50, 60, 30
    norm = []
    for name, counts in series:
        tot = sum(counts) or 1
        norm.append((name, [c / tot if density else c for c in counts]))
    ymax = max([max(v) for _, v in norm] + [1e-9]) * 1.1
    x0, x1 = edges[0], edges[-1]
    sx = lambda v: left + (w - left - 20) * (v - x0) / (x1 - x0)
    sy = lambda v: top + (h - top - bottom) * (1 - v / ymax)
    body = [f'<line x1="{left}" y1="{sy(0)}" x2="{w - 20}" y2="{sy(0)}" stroke="black"/>',
            f'<text x="{(left + w) / 2}" y="{h - 25}" text-anchor="middle">{escape(xlabel)}</text>']
    for t in range(6):
        v = x0 + (x1 - x0) * t / 5
        body.append(f'<text x="{sx(v):.1f}" y="{sy(0) + 14:.1f}" text-anchor="middle">{v:.1f}</text>')
    for k, (name, vals) in enumerate(norm):
        c = PALETTE[k % len(PALETTE)]
        pts = []
        for i, v in enumerate(vals):
            pts += [f"{sx(edges[i]):.1f},{sy(v):.1f}", f"{sx(edges[i + 1]):.1f},{sy(v):.1f}"]
        body.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{c}" stroke-width="2"/>')
        body.append(f'<text x="{left + 10}" y="{top + 14 * (k + 1)}" fill="{c}">{escape(name)}</text>')
    return _frame(w, h, body, title)


def lines(x_labels: list[str], series: list[tuple[str, list[float]]], title: str = "", ylabel: str = "",
          log: bool = False) -> str:
    """Line chart over categorical x (e.g. layers input -> output)."""
    import math
    w, h, left, bottom, top = max(520, 40 + 14 * len(x_labels)), 320, 60, 110, 30
    tf = (lambda v: math.log10(max(v, 1e-12))) if log else (lambda v: v)
    allv = [tf(v) for _, vs in series for v in vs]
    lo, hi = min(allv + [0 if not log else -6]), max(allv + [1e-12])
    sy = lambda v: top + (h - top - bottom) * (1 - (tf(v) - lo) / ((hi - lo) or 1))
    n = max(1, len(x_labels) - 1)
    sx = lambda i: left + (w - left - 20) * i / n
    body = [f'<text x="14" y="{(top + h - bottom) / 2}" transform="rotate(-90 14 {(top + h - bottom) / 2})" '
            f'text-anchor="middle">{escape(ylabel)}{" (log10)" if log else ""}</text>']
    for k, (name, vs) in enumerate(series):
        c = PALETTE[k % len(PALETTE)]
        pts = " ".join(f"{sx(i):.1f},{sy(v):.1f}" for i, v in enumerate(vs))
        body.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        body.append(f'<text x="{left + 10}" y="{top + 14 * (k + 1)}" fill="{c}">{escape(name)}</text>')
    for i, lab in enumerate(x_labels):
        x, y = sx(i), h - bottom + 8
        body.append(f'<text x="{x:.1f}" y="{y}" transform="rotate(60 {x:.1f} {y})" font-size="9">{escape(lab[:28])}</text>')
    return _frame(w, h, body, title)
