"""Home's finished demo, rendered from precomputed files (assets/demo/: demo.json and PNGs); no torch."""
from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from .charts import MODEL_NAMES, fisher_bars, likelihood_histogram, metrics_table
from .faces import face_pairs
from .session import ORL_CREDIT
from .words import paired_words

SHORT_MODEL = {"full": "the full model", "RoLSS": "RoLSS"}


def _model(who: str) -> str:
    return SHORT_MODEL.get(who, who)


def _paths(p: dict, folder: Path) -> dict:
    """A pair from demo.json with its file names made paths in `folder` (the defended model's too)."""
    q = {**p, "real": folder / p["real"], "recon": folder / p["recon"]}
    if p.get("predicted_real"):
        q["predicted_real"] = folder / p["predicted_real"]
    if p.get("defended"):
        dd = dict(p["defended"])
        dd["recon"] = folder / dd["recon"]
        if dd.get("predicted_real"):
            dd["predicted_real"] = folder / dd["predicted_real"]
        q["defended"] = dd
    return q


def demo_result(folder: Path) -> bool:
    """Render a finished result from a folder of precomputed files (demo.json + PNGs); no torch."""
    spec_path = folder / "demo.json"
    if not spec_path.exists():
        st.info("The precomputed demo (assets/demo/) is not in this checkout; build it with "
                "`python scripts/make_demo.py`, or go to **Architecture** and **Attack** to make your own.",
                icon=":material/info:")
        return False
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, ValueError) as e:
        st.error(f"assets/demo/demo.json is unreadable: {e}")
        return False
    st.subheader(spec.get("title", "A finished attack"))
    if spec.get("caption"):
        st.markdown(spec["caption"])
    if spec.get("metrics"):
        st.markdown(metrics_table(spec["metrics"]))
    d = spec.get("paired")
    if d and all(d.get(k) is not None for k in ("value", "lo", "hi", "n")):
        same = " from the same starting latents" if d.get("same_starting_latents") else ""
        st.markdown(paired_words(d, _model(d.get("a", "full")), _model(d.get("b", "RoLSS"))) +
                    f" Paired: both models were attacked on the same identities{same} and judged by the same "
                    "evaluation model, so the interval is the difference's own (95% bootstrap over identities).")
    if spec.get("pairs"):
        pairs = [_paths(p, folder) for p in spec["pairs"]]
        if all(p.get("defended") for p in pairs):
            st.markdown(f"**The same identities under each model.** Per identity: a real private face, then the "
                        f"attack's reconstruction under the full model and under RoLSS (each the restart the target "
                        f"was most confident in). A reconstruction is framed green with ✓ *right* when the "
                        f"evaluation model recognises the identity, red with ✗ *wrong* when it judges someone else, "
                        f"whose real face is shown under it. Confidence: the target's confidence in the attacked "
                        f"identity (p_T).")
            right = sum(bool(p.get("correct")) for p in pairs), sum(bool(p["defended"].get("correct")) for p in pairs)
            st.markdown(f"Of these {len(pairs)} identities the evaluation model recognises **{right[0]} under the full "
                        f"model** and **{right[1]} under RoLSS** (the numbers above count every identity and "
                        f"restart).")
            face_pairs(pairs, rows=[("", "Full model"), ("defended", "RoLSS")])
        else:
            st.markdown(f"**Reconstructions under the {MODEL_NAMES['full'].lower()} only** (this demo does not "
                        "ship the RoLSS run's reconstructions; RoLSS appears in the numbers above and in the "
                        "histogram below). Per identity: a real private face, then the attack's reconstruction, "
                        "framed green with ✓ *right* when the evaluation model recognises the identity, red with "
                        "✗ *wrong* when it judges someone else, whose real face is shown under it. Confidence: the "
                        "target's confidence in the attacked identity (p_T).")
            face_pairs(pairs, rows=[("", "Full model")])
    if spec.get("histograms"):
        likelihood_histogram(spec["histograms"], key="demo_hist")
        st.caption("Both models make most reconstructions with high confidence; a defense works when more of "
                   "its confident reconstructions are judged to be the wrong person (hatched bars).")
    if spec.get("fisher"):
        fisher_bars(spec["fisher"]["layers"], spec["fisher"]["series"], key="demo_fisher",
                    title="Fisher information per layer (full model)")
        st.caption("Each loss normalised on its own (its share of its total, log scale); below, the ratio of "
                   "the two shares: above 1, a layer matters relatively more to the attack than to "
                   "classification. Layers without a bar are below 0.001% (rounded to 0 in the demo file).")
    if spec.get("notes"):
        st.caption(spec["notes"])
    st.caption(spec.get("credit", ORL_CREDIT))
    return True
