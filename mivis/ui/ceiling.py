"""A prior's ceiling on the pages: beside every attack accuracy ("this prior can show dlib at most X%; this
attack reached Y% of that"), and on the Attack page the prior's measured ceiling with a button that measures
it (a job). Always labelled as what it is: a diagnostic of the prior that uses the private images, not an
attack. The numbers come from mivis.analysis.ceiling; this module only renders them."""
from __future__ import annotations

import streamlit as st

from .errors import guard
from .words import plain

LABEL = "Prior ceiling"
WHAT = ("a diagnostic of the prior, not an attack: each private training image projected into the prior (the "
        "latent whose image is closest in pixel MSE) and judged. It uses the private images, which no attacker "
        "has, and estimates the most an attack with this prior can show each judge")
JUDGE_WORDS = {"E": "the evaluation model E", "dlib": "dlib"}


def ceiling_lines(ws, attack, ev: dict, judges=("dlib", "E"), n_boot: int = 1000) -> list[str]:
    """One sentence per judge that has a ceiling for this attack's prior and split (markdown)."""
    from ..analysis import ceiling as C  # here, not at the top: Home imports mivis.ui and paints without torch
    lines = []
    for judge in judges:
        rec = C.pick_ceiling(ws, attack.config.get("prior_run"), attack.data_fingerprint, judge,
                             (ev.get("judge") or {}).get("run"))
        if rec is None:
            continue
        obj = C.read_ceiling(rec)
        v = C.versus_ceiling(obj["rows"], ev["per_reconstruction"], judge, float(rec.metrics.get("chance") or 0),
                             n_boot=n_boot, seed=int(ev.get("bootstrap_seed", 0) or 0))
        lines.append(f"**{C.describe(v, JUDGE_WORDS[judge])}** "
                     f"(ceiling `{rec.id[-6:]}`: {plain(C.settings_words(rec))})")
    return lines


def ceiling_note(ws, attack, ev: dict | None = None, judges=("dlib", "E"), box=None) -> None:
    """The ceiling sentences under an attack's accuracy, or how to measure the ceiling when there is none
    (`ev`: the attack's evaluation, read here when not given)."""
    where = box or st
    with guard():
        if ev is None:
            ev = attack.read_json("evaluation.json")
        lines = ceiling_lines(ws, attack, ev, judges)
        if lines:
            where.markdown(f"{LABEL} ({WHAT}):\n\n" + "\n\n".join(f"- {line}" for line in lines))
        elif attack.config.get("prior_run"):
            where.caption(f"No {LABEL.lower()} measured for this attack's prior on this data yet ({WHAT}). Measure "
                          f"it on the Attack page or with `python -m mivis prior ceiling {attack.config['prior_run']}`.")


def ceiling_panel(ws, prior_id: str | None, eval_id: str | None, knobs, page: str, box=None) -> None:
    """The Attack page's view of the chosen prior's ceiling under the chosen E and dlib, and the button that
    measures it. `prior_id` may be 'shipped:NAME' (imported when the button is pressed)."""
    from ..analysis import ceiling as C  # here, not at the top: Home imports mivis.ui and paints without torch
    from ..analysis.ceiling import CEILING_PARAMS
    st.markdown(f"**{LABEL}** ({WHAT}).")
    shown = None
    if prior_id and not prior_id.startswith("shipped:"):
        with guard():
            found = [r for r in C.ceilings_of(ws, prior_id) if r.config.get("eval_run") in (eval_id, None)]
            if found:
                shown = found[0]
                m = shown.metrics
                parts = []
                if "ceiling_acc_top1_dlib" in m:
                    parts.append(f"dlib at most **{C.metric_words(m['ceiling_acc_top1_dlib'])}**")
                if "ceiling_acc_top1" in m and shown.config.get("eval_run"):
                    parts.append(f"E at most **{C.metric_words(m['ceiling_acc_top1'])}** (E names "
                                 f"{C.metric_words(m.get('originals_acc_top1'))} of the real images)")
                st.markdown(f"This prior can show {' and '.join(parts) or 'no judge'} of the private faces; pixel MSE "
                            f"{C.metric_words(m.get('pixel_mse'), pct=False)}, chance "
                            f"{100 * (m.get('chance') or 0):.0f}%. Measured with {plain(C.settings_words(shown))}.")
                grid = shown.file("projections.png")
                if grid.exists():
                    from .faces import png_crisp
                    st.image(png_crisp(shown.read_image("projections.png"), 384), width=384,
                             caption="Each row: a real private training face, then its projection into the prior "
                                     "(three pairs per identity).")
    if shown is None:
        st.caption("Not measured yet for this prior and evaluation model. It takes about a minute or two on a "
                   "laptop CPU at 32 px (2 starts x 200 steps, all private training images).")
    with st.expander("Ceiling settings", icon=":material/tune:"):
        values = knobs.widgets([p for p in CEILING_PARAMS if p.name not in ("identities", "batch_size")],
                               prefix="ceiling.", columns=4)
    if st.button("Measure this prior's ceiling", key=f"{page}:ceiling", icon=":material/straighten:",
                 disabled=not prior_id,
                 help="a job: projects every private training image into the prior and judges the projections"):
        pid = prior_id
        try:
            if pid and pid.startswith("shipped:"):
                from ..priors import import_prior
                pid = import_prior(pid[8:], ws).id
        except Exception as e:
            from .errors import error
            error(e, box=box)
            return
        from .jobs import submit_job
        submit_job("ceiling", {"prior_run": pid, "eval_run": eval_id or "none", "params": values},
                   label="prior ceiling (diagnostic)", page=page, box=box)
