"""Trade-off: natural accuracy vs attack accuracy for every attacked target, coloured by defense, with the
intervals, the Pareto front, Delta against an undefended reference, paired comparisons, and the RoLSS
paper's table for reference. Click a point to open its run."""
import streamlit as st

from mivis import ui

ui.ensure_router()

from mivis.params import Param  # noqa: E402
from mivis.report.findings import MIN_LEARNED_ACC, attack_labels, measured_effects  # noqa: E402
from mivis.report.paper import PAPER_TABLE  # noqa: E402

PAGE = "tradeoff"
st.title("Privacy-utility trade-off")
st.caption("Each point is one attack run on one target: natural accuracy of the target on held-out private images "
           "(utility) against the attack's top-1 accuracy under the chosen judge (privacy loss), with the "
           "95% identity-bootstrap interval. Better defenses sit **right and low**.")
knobs = ui.Knobs(PAGE)
ws = ui.workspace()


def defense_label(model_cfg: dict) -> str:
    d = model_cfg.get("defenses") or {}
    parts = []
    for name, p in d.items():
        if name == "skips" and isinstance(p, dict) and p.get("scales"):
            s = p["scales"]
            if all(v == 1.0 for v in s):  # every skip kept: the architecture as it is, no defense
                continue
            head, last = s[:-1], s[-1]
            parts.append("RoLSS" if all(v == 1.0 for v in head) and last == 0.0
                         else f"SSF {last:g}" if all(v == 1.0 for v in head) and 0 < last < 1
                         else ui.skips_words(s))  # "stage 2's skips removed", not "skips 1,0,1,1"
        elif name == "tldmi" and isinstance(p, dict) and "freeze" in p:
            parts.append(f"TL-DMI freeze {p['freeze']}")  # each depth is its own point on the trade-off
        else:
            parts.append(name)
    return " + ".join(parts) or "none"


points = []
for r in ws.list(kind="attack", status="done"):
    tid = r.config.get("target_run")
    if not tid or not ws.exists(tid):
        continue
    t = ws.get(tid)
    top1 = r.metrics.get("attack_acc_top1")
    if t.metrics.get("natural_acc") is None or not isinstance(top1, dict) or top1.get("value") is None:
        continue
    points.append({"run": r.id, "target": t.id, "arch": t.config["model"]["arch"], "attack": r.config["attack"]["name"],
                   "judge": r.config.get("eval_run"), "defense": defense_label(t.config["model"]) + (
                       " (pre-trained)" if t.config["train"].get("init_run") or t.config["train"].get("init_weights")
                       else ""),
                   "acc": t.metrics["natural_acc"], "att": top1["value"], "lo": top1.get("lo"), "hi": top1.get("hi"),
                   "by": {"E": top1, "dlib": (r.metrics.get("extra_judges") or {}).get("dlib", {}).get("attack_acc_top1")},
                   "identities": tuple(sorted(r.config["attack"]["params"].get("identities") or [])),
                   "name": t.name or t.config["model"]["arch"], "px": t.config["model"]["img_size"], "record": r})
if points:  # runs are comparable only with the same attack settings and image size
    for p, label in zip(points, attack_labels(ws, [p["record"] for p in points], pool_seeds=True)):
        p["attack"] = f"{label}, {p['px']} px"

def measured_table(rows: list[dict]) -> str:
    """The studies' rows as a markdown table of five short columns, six with dlib's drop (a 10-column dataframe
    was cut at 1024 px)."""
    dlib = any(r.get("dlib") for r in rows)  # the study judged its reconstructions with dlib too
    out = ["| Target | Attack | Defense | Drop, pp [95% CI] | Verdict |" + (" Under dlib, pp |" if dlib else ""),
           "|---|---|---|---|---|" + ("---|" if dlib else "")]
    for r in rows:
        out.append(f"| {r['arch']}, {r['px']} px | {ui.attack_words(r['attack'])} | "
                   f"{ui.study_defense_words(r['defense'])} | **{r['drop pp']:+.1f}** {r['95% CI pp']} | "
                   f"{r['verdict']} ({r['seeds']} seed{'s' if r['seeds'] != 1 else ''}) |"
                   + ((f" **{r['dlib']['drop pp']:+.1f}** {r['dlib']['95% CI pp']} {r['dlib']['verdict']} |"
                       if r["dlib"] else " - |") if dlib else ""))
    return "\n".join(out)


left, right = st.container(), st.container()  # the references below the plane, full width (a side column cut them)
with right:
    st.markdown("**Reference: the RoLSS paper** (PPA attack, FaceScrub 224 px; Acc / AttAcc in %, "
                "Delta = AttAcc drop / Acc drop vs no defense, higher is better)")
    st.dataframe([{"arch": a, "defense": d, "Acc": acc, "AttAcc": att, "Delta": "–" if dl in ("-", None) else str(dl)}
                  for a, d, acc, att, dl in PAPER_TABLE], hide_index=True, height=420, width="stretch")
    st.caption("Also reported: BiDO + RoLSS on ResNet-101 reaches AttAcc 41.44 (BiDO alone 67.07). "
               "Koh et al., ECCV 2024, arXiv 2409.01696.")
    measured = measured_effects(ui.ROOT)
    if measured:
        st.markdown("**Measured here on the embedded ORL data** (mivis's studies: docs/v2/ holds the CPU grids rerun "
                    "with method v2, which follows the papers' code; docs/findings.md and docs/gpu/findings.md are "
                    "method v1, which predates docs/differences.md): the paired drop in top-1 attack accuracy vs the same architecture "
                    "without defense, in percentage points (positive: the defense leaks less). *Not resolved* "
                    "means the interval contains 0: the data cannot tell the defense from no defense, whatever "
                    "the paper found. *Under dlib*: the same paired drop judged by dlib's face embedding, which "
                    "never saw the private images.")
        studies = list(dict.fromkeys(r["study"] for r in measured))
        # one tab per method version and machine ("v2 CPU: regimes" -> tab "v2 CPU", section "regimes"): a tab per
        # study would not fit in one row at 1024 px
        tabs = list(dict.fromkeys(s.partition(":")[0] for s in studies))
        for tab, name in zip(st.tabs([f"{t} ({sum(r['study'].partition(':')[0] == t for r in measured)})"
                                      for t in tabs]), tabs):
            with tab, st.container(height=460):  # a table whose words wrap: readable at 1024 px without scrolling sideways
                for study in (s for s in studies if s.partition(":")[0] == name):
                    if ":" in study:
                        st.markdown(f"**{study.partition(':')[2].strip()}**")
                    st.markdown(measured_table([r for r in measured if r["study"] == study]))

with left:
    if not points:
        st.info("No finished attack on a target that still exists. Train targets with and without defenses "
                "(Architecture), attack each (Attack), and they appear here.", icon=":material/info:")
        knobs.finish()
        st.stop()
    judge = knobs.widget(Param("judge", str, "E", "who decides that a reconstruction shows the attacked person: E, "
                               "the evaluation model (trained on the same private images as the target), or dlib's "
                               "face embedding (never trained on them; 1-NN)", choices=("E", "dlib")),
                         label="Judge", format_func=lambda j: {"E": "E: evaluation model",
                                                               "dlib": "dlib: independent face embedding"}[j])
    have = [p for p in points if isinstance(p["by"].get(judge), dict) and p["by"][judge].get("value") is not None]
    if len(have) < len(points):
        st.caption(f"{len(points) - len(have)} of {len(points)} attack runs have no {judge} verdicts" +
                   (": `python -m mivis evaluate rejudge --dlib` adds them without retraining." if judge == "dlib"
                    else "."))
    if not have:
        st.info(f"No attack run has {judge} verdicts yet.", icon=":material/info:")
        knobs.finish()
        st.stop()
    for p in have:
        p.update(att=p["by"][judge]["value"], lo=p["by"][judge].get("lo"), hi=p["by"][judge].get("hi"))
    points = have
    from mivis.evaluation.compare import JUDGE_METRIC
    kinds = sorted({p["attack"] for p in points})
    common = max(kinds, key=lambda k: sum(p["attack"] == k for p in points))
    atk = knobs.widget(Param("attack", str, common, "only runs of one attack, with the same settings and image "
                             "size, are comparable", choices=tuple(kinds)), label="Attack")
    pts = [p for p in points if p["attack"] == atk]
    archs = sorted({p["arch"] for p in pts})
    if len(archs) > 1:
        only = knobs.widget(Param("arch", str, "all", "show one architecture's runs, or all of them",
                                  choices=("all",) + tuple(archs)), label="Architecture")
        pts = [p for p in pts if only in ("all", p["arch"])]

    import plotly.graph_objects as go
    fig = go.Figure()
    from plotly.colors import qualitative
    palette = qualitative.Dark24  # a colour per defense: a study has many more than 8
    defenses = sorted({p["defense"] for p in pts}, key=lambda d: (d != "none", d))
    for i, d in enumerate(defenses):
        g = [p for p in pts if p["defense"] == d]
        fig.add_trace(go.Scatter(
            x=[100 * p["acc"] for p in g], y=[100 * p["att"] for p in g], mode="markers",
            name="no defense" if d == "none" else d,
            marker=dict(size=12, color=palette[i % len(palette)], line=dict(width=1, color="white"),
                        symbol=["circle" if p["acc"] >= MIN_LEARNED_ACC else "x" for p in g]),
            error_y=dict(type="data", symmetric=False,
                         array=[100 * (p["hi"] - p["att"]) if p["hi"] is not None else 0 for p in g],
                         arrayminus=[100 * (p["att"] - p["lo"]) if p["lo"] is not None else 0 for p in g]),
            customdata=[p["run"] for p in g],
            text=[f"{p['name']} ({p['arch']})<br>{p['defense']}<br>run {p['run']}" for p in g],
            hovertemplate="%{text}<br>natural acc %{x:.1f}%<br>attack acc %{y:.1f}%<extra></extra>"))
    # Pareto front: no other point has higher natural accuracy AND lower attack accuracy
    # a target that did not learn leaks nothing to invert: no privacy-utility point, not on the front
    learned = [p for p in pts if p["acc"] >= MIN_LEARNED_ACC]
    # one front per architecture: a defense trades accuracy against leakage within an architecture; a line from a
    # ResNet-18 run to a RegNet run would compare architectures, not defenses
    front = []
    for a in sorted({p["arch"] for p in learned}):
        mine = [p for p in learned if p["arch"] == a]
        fa = sorted([p for p in mine if not any(q["acc"] >= p["acc"] and q["att"] <= p["att"] and
                                                (q["acc"] > p["acc"] or q["att"] < p["att"]) for q in mine)],
                    key=lambda p: p["acc"])
        front += fa
        if len(fa) > 1:
            fig.add_trace(go.Scatter(x=[100 * p["acc"] for p in fa], y=[100 * p["att"] for p in fa],
                                     mode="lines", name=f"Pareto front, {a}" if len(archs) > 1 else "Pareto front",
                                     line=dict(dash="dot", color="#555"), hoverinfo="skip"))
    fig.update_layout(title=f"{atk}: natural accuracy vs attack accuracy under {judge}",
                      xaxis_title="natural accuracy (%)",
                      yaxis_title=f"attack accuracy top-1 under {judge} (%)", legend=dict(orientation="h", y=-0.2),
                      clickmode="event+select")
    event = ui.plot(fig, key=f"{PAGE}:plane", on_select="rerun", height=480)
    unlearned = len(pts) - len(learned)
    st.caption("Click a point to open its run in Results. Error bars: 95% bootstrap over identities. "
               f"Pareto front (one per architecture): {len(front)} of {len(pts)} runs"
               + (" (runs with the same two accuracies lie on one point)" if len({(p["acc"], p["att"]) for p in pts})
                  < len(pts) else "") + "."
               + (f" {unlearned} run(s) attack a target that did not learn (natural accuracy below "
                  f"{100 * MIN_LEARNED_ACC:.0f}%), drawn as x and left off the front: their low attack accuracy "
                  "is no privacy finding." if unlearned else ""))
    sel = (event or {}).get("selection", {}).get("points", []) if hasattr(event, "get") else []
    if sel:
        rid = sel[0].get("customdata")
        if isinstance(rid, list):
            rid = rid[0]
        if rid:
            st.switch_page("pages/results.py", query_params={"run": rid})

    # --- Delta against an undefended reference -----------------------------------------------------------
    st.subheader("Delta against an undefended reference")
    refs = [p for p in pts if p["defense"] == "none"]
    lab = {p["run"]: f"{p['name']} · {p['defense']} · {ui.metric_text(p['acc'])} / "
                     f"{100 * p['att']:.0f}% · {p['run'][-6:]}" for p in pts}
    if not refs:
        st.info("No attack on an undefended target yet: Delta needs one as the reference.", icon=":material/info:")
    else:
        ref = knobs.widget(Param("ref", str, refs[0]["run"], "the undefended reference attack run",
                                 choices=tuple(p["run"] for p in refs)), label="Reference (no defense)",
                           format_func=lambda i: lab[i])
        from mivis.evaluation import delta
        rows = []
        for p in pts:
            if p["run"] == ref or p["defense"] == "none":
                continue
            name = f"{p['name']} · {p['defense']} · {p['run'][-6:]}"
            try:
                d = delta(ws, p["run"], ref, JUDGE_METRIC[judge])
            except Exception as e:
                rows.append({"run": name, "Delta": f"- ({ui.one_line(e)})"})
                continue
            val = "– (no accuracy drop)" if d.get("value") is None else \
                f"{d['value']:.2f} [{d['lo']:.2f}, {d['hi']:.2f}]"
            rows.append({"run": name, "Acc drop": None if d.get("acc_drop") is None
                         else round(100 * d["acc_drop"], 1), "AttAcc drop": round(100 * d["attack_acc_drop"], 1),
                         "Delta": val})
        if rows:  # fixed, short columns: the whole table fits at 1024 px
            st.dataframe(rows, hide_index=True, width="stretch", column_config={
                "run": st.column_config.TextColumn("Defended run", width="medium"),
                "Acc drop": st.column_config.NumberColumn("Acc drop (pp)", width=95, format="%.1f",
                                                          help="natural accuracy lost vs the reference"),
                "AttAcc drop": st.column_config.NumberColumn("AttAcc drop (pp)", width=110, format="%.1f",
                                                             help=f"top-1 attack accuracy under {judge} lost "
                                                                  "vs the reference"),
                "Delta": st.column_config.TextColumn("Delta [95% CI]", width=150,
                                                     help="AttAcc drop / Acc drop; higher is a better defense; "
                                                          "undefined when natural accuracy did not drop")})
        else:
            st.caption("No defended target has been attacked with this attack yet.")

    # --- pairwise comparison ------------------------------------------------------------------------------
    st.subheader("Is the difference resolved?")
    ids = tuple(p["run"] for p in pts)
    if len(ids) < 2:
        st.caption("Two attack runs are needed for a comparison.")
    else:
        cc = st.columns(2)
        a = knobs.widget(Param("a", str, ids[0], "first run", choices=ids), container=cc[0], label="First run",
                         format_func=lambda i: lab[i])
        rest = tuple(i for i in ids if i != a)
        b = knobs.widget(Param("b", str, rest[0], "second run", choices=rest), container=cc[1], label="Second run",
                         format_func=lambda i: lab[i])
        from mivis.evaluation import compare_runs
        try:
            d = compare_runs(ws, a, b, JUDGE_METRIC[judge])
            # the runs by name, never "A" and "B"
            short = {p["run"]: ui.name_and_id(p["name"], p["run"], 48) for p in pts}
            na, nb = ui.plain(short[a]), ui.plain(short[b])
            st.markdown(ui.paired_words(d, na, nb, judge=judge) +
                        ("" if d.get("same_starting_latents") else " (Different seeds/restarts: the starting latents "
                                                                    "differ, so the pairing is by identity only.)"))
        except Exception as e:
            st.info(f"Not comparable: {ui.one_line(e)}", icon=":material/info:")
knobs.finish()
