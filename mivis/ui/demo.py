"""Home's finished demo, rendered from precomputed files (assets/demo/: demo.json and PNGs); no torch."""
from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from .charts import MODEL_NAMES, fisher_bars, likelihood_histogram, metrics_table
from .faces import face_pairs
from .session import ORL_CREDIT
from .words import metric_text, paired_words

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
    for v in (q, q.get("defended") or {}):
        if isinstance(v.get("dlib"), dict):
            dv = dict(v["dlib"])
            if dv.get("predicted_real"):
                dv["predicted_real"] = folder / dv["predicted_real"]
            v["dlib"] = dv
    return q


def has_dlib(spec: dict) -> bool:
    """Whether the demo carries the independent judge's verdicts (built since issue 28); older demos show E's only."""
    pairs = spec.get("pairs") or []
    return bool(spec.get("paired_dlib")) and bool(pairs) and all(isinstance(p.get("dlib"), dict) for p in pairs)


def pct(x: float) -> str:
    """A chance level in words: 0.05 -> '5%', 0.025 -> '2.5%' (not rounded to 2%), 1/6 -> '17%'."""
    return f"{100 * x:.2g}%"


def _metric(spec: dict, label: str) -> dict | None:
    return next((m["value"] for m in spec.get("metrics") or [] if m.get("label") == label), None)


def _complete(d: dict | None) -> bool:
    return bool(d) and all(d.get(k) is not None for k in ("value", "lo", "hi", "n"))


def judges_agree_words(e: dict, dlib: dict) -> str:
    """What the two judges say together about the paired difference: resolved under both, under E only (said
    plainly: E learned from the same private photos, so its verdict alone does not show a leak), under dlib
    only, or under neither."""
    re_, rd = bool(e.get("resolved")), bool(dlib.get("resolved"))
    if re_ and not rd:
        return ("**The difference is resolved only under E, not under dlib.** Only the evaluation model, which "
                "learned from the same private photos as the attacked models, separates them; the independent "
                "judge does not. So this demo does not show that one model leaks less.")
    if rd and not re_:
        return ("The difference is resolved under dlib but not under E: the independent judge separates the "
                "models, the evaluation model does not.")
    if rd and re_:
        same = (e["value"] > 0) == (dlib["value"] > 0)
        return ("The difference is resolved under both judges" +
                (", in the same direction." if same else ", but in opposite directions: neither verdict holds."))
    return "Under neither judge is the difference resolved."


def class_votes(folder: Path, n_items: int) -> dict | None:
    """The class's votes on this demo (Be the judge, run "demo") once the teacher revealed them: the tally and per item
    (the full model's reconstruction of pairs[i]) [right, votes]. None when there are none, when the folder is
    not the one Be the judge votes on, or when the workspace cannot be read (Home never stops for it)."""
    import sqlite3

    from ..params import ParamError
    from ..runs import RunError, Workspace
    from .. import votes as V
    try:
        if folder.resolve() != V.demo_folder_default().resolve():
            return None
        ws = Workspace()
        t = V.tally(ws, V.DEMO, n_boot=1000)
        if not t["votes"] or t["state"] not in (V.REVEALED, V.CLOSED):  # no answers before the teacher's reveal
            return None
        per = {i: [sum(v), len(v)] for i, v in V.item_votes(ws, V.DEMO).items() if 0 <= i < n_items}
    except (RunError, ParamError, sqlite3.Error, OSError):
        return None
    return {**t, "per_item": per}


def _headline(spec: dict, votes: dict | None) -> None:
    """The independent judge first: dlib's top-1 on each model with chance, then E's, then the class's."""
    d_full, d_rolss = (_metric(spec, f"Attack acc. top-1 by dlib ({m})") for m in ("full", "RoLSS"))
    e_full, e_rolss = (_metric(spec, f"Attack acc. top-1 by E ({m})") for m in ("full", "RoLSS"))
    chance = spec.get("chance")
    ch = f" (chance {pct(chance)})" if chance else ""
    if d_full and d_rolss:
        st.markdown(f"**dlib, an independent face recogniser, names the right person in {metric_text(d_full)} "
                    f"of the attack's reconstructions of the full model and {metric_text(d_rolss)} of RoLSS's"
                    f"{ch}.**")
    if e_full and e_rolss:
        st.markdown(f"The evaluation model **E**, which learned from the same private photos as the attacked "
                    f"models, says **{metric_text(e_full)}** and **{metric_text(e_rolss)}**.")
    if votes and votes.get("accuracy"):
        n, k = votes["votes"], votes["voters"]
        st.markdown(f"**The class** (Be the judge, {n} vote{'s' * (n != 1)} by {k} voter{'s' * (k != 1)} on the full "
                    f"model's reconstructions shown below): **{metric_text(votes['accuracy'])}** named the right "
                    f"person (chance {pct(votes['chance'])} with the faces they chose from).")


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
    dlib = has_dlib(spec)
    votes = class_votes(folder, len(spec.get("pairs") or []))
    if dlib:
        _headline(spec, votes)
    else:
        st.info("This demo predates the independent judge: it shows only the evaluation model E's verdicts "
                "(E learned from the same private photos as the attacked model). Rebuild it with "
                "`python scripts/make_demo.py` to see dlib's verdicts beside E's.", icon=":material/history:")
    if spec.get("caption"):
        st.markdown(spec["caption"])
    if spec.get("metrics"):
        st.markdown(metrics_table(spec["metrics"]))
    d = spec.get("paired")
    same = " from the same starting latents" if (d or {}).get("same_starting_latents") else ""
    a_name, b_name = _model((d or {}).get("a", "full")), _model((d or {}).get("b", "RoLSS"))
    if dlib and _complete(d) and _complete(spec["paired_dlib"]):
        dd = spec["paired_dlib"]
        st.markdown(judges_agree_words(d, dd))
        st.markdown("- " + paired_words(dd, a_name, b_name, judge="dlib") + "\n"
                    "- " + paired_words(d, a_name, b_name, judge="E"))
        st.caption(f"Paired: both models were attacked on the same identities{same} and judged by the same two "
                   "judges, so each interval is the difference's own (95% bootstrap over identities).")
    elif _complete(d):
        st.markdown(paired_words(d, a_name, b_name) +
                    f" Paired: both models were attacked on the same identities{same} and judged by the same "
                    "evaluation model, so the interval is the difference's own (95% bootstrap over identities).")
    if spec.get("pairs"):
        pairs = [_paths(p, folder) for p in spec["pairs"]]
        for i, (p, q) in enumerate(zip(spec["pairs"], pairs)):
            right, n = ((votes or {}).get("per_item") or {}).get(i, (0, 0))
            if n:
                q["votes"] = f"class: {right} of {n} right"
        if dlib and all(p.get("defended") for p in pairs):
            st.markdown("**The same identities under each model.** Per identity: a real private face, then the "
                        "attack's reconstruction under the full model and under RoLSS (each the restart the target "
                        "was most confident in). **The frame is dlib's verdict**: green with ✓ when dlib names the "
                        "right person, red with ✗ when it names someone else. Under each face both verdicts in "
                        "words, dlib's first, then E's, with the real face of whoever a wrong verdict named; the "
                        "target's confidence in the attacked identity (p_T)" +
                        ("; and how the class voted on it (Be the judge)." if votes else "."))
            views = [[p.get(k) if k else p for p in pairs] for k in ("", "defended")]  # full, RoLSS
            count = [(sum(bool(v.get("correct")) for v in vs), sum(bool(v["dlib"].get("correct")) for v in vs))
                     for vs in views]
            st.markdown(f"Of these {len(pairs)} identities dlib recognises **{count[0][1]} under the full model** "
                        f"and **{count[1][1]} under RoLSS**; E recognises {count[0][0]} and {count[1][0]} (the "
                        f"numbers above count every identity and restart).")
            face_pairs(pairs, rows=[("", "Full model"), ("defended", "RoLSS")], judges=[("dlib", "dlib"), ("", "E")])
        elif all(p.get("defended") for p in pairs):
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
        hists = spec["histograms"]
        by_dlib = dlib and all(len(h.get("correct_dlib") or []) == len(h.get("likelihood") or []) for h in hists)
        if by_dlib:  # split by the judge the page leads with
            hists = [{**h, "correct": h["correct_dlib"]} for h in hists]
        likelihood_histogram(hists, key="demo_hist")
        st.caption("Both models make most reconstructions with high confidence; a defense works when more of "
                   "its confident reconstructions are judged to be the wrong person (hatched bars)" +
                   (", here by dlib." if by_dlib else ", here by the evaluation model E."))
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
