"""Home's finished demo, rendered from precomputed files (assets/demo/: demo.json and PNGs); no torch."""
from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from .charts import MODEL_NAMES, fisher_bars, likelihood_histogram, metrics_table
from .faces import face_pairs
from .session import ORL_CREDIT


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
    if spec.get("pairs"):
        pairs = []
        for p in spec["pairs"]:
            q = {**p, "real": folder / p["real"], "recon": folder / p["recon"]}
            if p.get("predicted_real"):
                q["predicted_real"] = folder / p["predicted_real"]
            if p.get("defended"):
                d = dict(p["defended"])
                d["recon"] = folder / d["recon"]
                if d.get("predicted_real"):
                    d["predicted_real"] = folder / d["predicted_real"]
                q["defended"] = d
            pairs.append(q)
        both = all(p.get("defended") for p in pairs)
        if both:
            st.markdown("**The same identities under each model.** Top: a real private face. Then the attack's "
                        "reconstruction under the full model and under RoLSS, framed green with ✓ when the "
                        "evaluation model recognises the identity, red with ✗ when it judges someone else "
                        "(whose real face is shown below it). Confidence: the target's confidence in the "
                        "attacked identity (p_T).")
            face_pairs(pairs, rows=[("", "full model"), ("defended", "RoLSS")])
        else:
            st.markdown(f"**Reconstructions under the {MODEL_NAMES['full'].lower()} only** (this demo does not "
                        "ship the RoLSS run's reconstructions; RoLSS appears in the numbers above and in the "
                        "histogram below). Top: a real private face. Below: the attack's reconstruction, framed "
                        "green with ✓ when the evaluation model recognises the identity, red with ✗ when it "
                        "judges someone else, whose real face is shown under it. Confidence: the target's "
                        "confidence in the attacked identity (p_T).")
            face_pairs(pairs)
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
