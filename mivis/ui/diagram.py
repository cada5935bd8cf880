"""The architecture's stage diagram (Graphviz): stages, blocks, skip arcs, frozen layers."""
from __future__ import annotations

import streamlit as st


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else (f"{n / 1e3:.1f}k" if n >= 1e3 else str(n))


def stage_dot(desc: dict, max_blocks: int = 4, wrap_over: int = 6) -> str:
    """A Graphviz (DOT) diagram of stages and blocks from `mivis.surgery.describe`: an arc around
    every block that carries a skip (solid = kept, dashed = scaled by s, none = removed). Blocks (and the
    stem) marked "frozen" (TL-DMI: not trained on private data) are grey and say so. With more than
    `wrap_over` blocks shown (DenseNet, EfficientNet) each stage is one row, stages top to bottom, so the
    diagram stays readable instead of one long line shrunk to the page's width."""
    kind = desc.get("skip_kind", "")
    shown_total = sum(min(len(s_["blocks"]), max_blocks) for s_ in desc["stages"])
    wrap = shown_total > wrap_over
    lines = ["digraph G {", f'rankdir={"TB" if wrap else "LR"}; nodesep=0.2; ranksep=0.3; bgcolor="transparent";',
             'node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
             'fillcolor="#eef3fb", color="#8aa4c8", height=0.35];',
             'edge [color="#555555", arrowsize=0.6];',
             'input [label="input", shape=plaintext, style=""];']
    chain: list[tuple[str, dict | None, float | None]] = [("input", None, None)]
    rows: list[list[str]] = []  # wrapped: each stage's node ids (one row each)
    if desc.get("stem_frozen") is not None:
        frozen = desc["stem_frozen"]
        lines.append(f'stem [label="stem{chr(92)}n{"frozen" if frozen else "trained"}", '
                     f'fillcolor="{"#d9d9d9" if frozen else "#eef3fb"}", color="{"#8c8c8c" if frozen else "#8aa4c8"}"];')
        chain.append(("stem", None, None))
    for st_ in desc["stages"]:
        i, blocks, scale = st_["index"], st_["blocks"], st_.get("scale")
        removed = st_["has_skip"] and scale == 0
        scaled = st_["has_skip"] and scale is not None and 0 < scale < 1
        state = ("no skips" if not st_["has_skip"] else "skips removed" if removed
                 else f"skips x{scale:g}" if scaled else "skips kept")
        n_frozen = sum(1 for b in blocks if b.get("frozen"))
        if n_frozen:
            state += " · frozen" if n_frozen == len(blocks) else f" · {n_frozen} of {len(blocks)} frozen"
        fill = "#fde2e1" if removed else ("#fff4d6" if scaled else "#eef3fb")
        lines.append(f'subgraph cluster_{i} {{ label="{st_["name"]}\n{state} · {_fmt_params(st_["params"])}"; '
                     f'fontname="Helvetica"; fontsize=10; style="rounded"; color="#b8c4d6";')
        shown = list(enumerate(blocks))
        if len(blocks) > max_blocks:
            shown = shown[:max_blocks - 1] + [(-1, None)] + shown[-1:]
        ids = []
        for j, b in shown:
            nid = f"s{i}b{j if j >= 0 else 'more'}"
            ids.append(nid)
            if b is None:
                lines.append(f'{nid} [label="… {len(blocks) - max_blocks} more", shape=plaintext, style=""];')
                chain.append((nid, None, None))
            else:
                if b.get("frozen"):
                    lines.append(f'{nid} [label="{b["type"]}\nfrozen", fillcolor="#d9d9d9", color="#8c8c8c"];')
                else:
                    lines.append(f'{nid} [label="{b["type"]}", fillcolor="{fill}"];')
                s = scale if kind == "concatenative" else b.get("scale")
                chain.append((nid, b, s))
        if wrap:
            lines.append("{rank=same; " + "; ".join(ids) + ";}")
            rows.append(ids)
        lines.append("}")
    lines.append('head [label="head", fillcolor="#e6f4ea", color="#7fb58f"];')
    chain.append(("head", None, None))
    row_ends = {r[-1] for r in rows}
    for (a, _, _), (b, _, _) in zip(chain, chain[1:]):
        # wrapped: the edge from a row's end to the next row does not pull the rows into a staircase
        lines.append(f"{a} -> {b}" + (" [constraint=false];" if wrap and a in row_ends else ";"))
    if wrap:  # stack the rows, left-aligned: invisible heavy edges between the rows' first nodes
        firsts = [chain[0][0]] + (["stem"] if desc.get("stem_frozen") is not None else []) + [r[0] for r in rows]
        for a, b in zip(firsts, firsts[1:]):
            if not (a == "input" and firsts[1] == "stem" and b == "stem"):
                lines.append(f"{a} -> {b} [style=invis, weight=10];")
        lines.append(f"{rows[-1][0]} -> head [style=invis, weight=10];" if rows else "")
    for k in range(1, len(chain) - 1):
        nid, b, s = chain[k]
        if b is None or not b.get("skip"):
            continue
        a, c = chain[k - 1][0], chain[k + 1][0]
        if s is None or s >= 1:
            lines.append(f'{a} -> {c} [constraint=false, color="#2b6cb0", penwidth=1.4];')
        elif s > 0:
            lines.append(f'{a} -> {c} [constraint=false, style=dashed, color="#d69e2e", label="x{s:g}", fontsize=8];')
    lines.append("}")
    return "\n".join(lines)


def stage_diagram(desc: dict) -> None:
    """The stage diagram at a readable size: a long one (wrapped, one row per stage) at its natural size,
    a short one across the page."""
    dot = stage_dot(desc)
    st.graphviz_chart(dot, width="content" if "rankdir=TB" in dot else "stretch")
