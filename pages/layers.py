"""Layers: Fisher information per layer (classification vs model inversion, and over attack iterations)
and gradient flow per stage, for one target or two side by side."""
import math

import streamlit as st

from mivis import ui

ui.ensure_router()

from mivis.analysis import LAYERS_PARAMS  # noqa: E402
from mivis.params import Param  # noqa: E402

PAGE = "layers"
st.title("Layers")
st.caption("Why a defense works. **Fisher information** of each layer's parameters: for classification (cross-entropy "
           "on the private training images) and for model inversion (the attack's identity loss on its "
           "reconstructions, differentiated w.r.t. the target's parameters). TL-DMI's argument: MI information sits "
           "in the first layers, classification information in the last ones. **Gradient flow**: how much of the "
           "attack's gradient reaches each stage, and the share carried by the skip path.")
knobs = ui.Knobs(PAGE)
ws = ui.workspace()
box = st.container()
job_box = st.container()

targets = ws.list(kind="target", status="done")
if not targets:
    st.info("No trained target yet: train one on the **Architecture** page.", icon=":material/info:")
    knobs.finish()
    st.stop()
by_id = {r.id: r for r in targets}
analyses = [r for r in ws.list(kind="analysis", status="done") if r.config.get("type") == "layers"]


def tlabel(i: str) -> str:
    r = by_id[i]
    m = r.config["model"]
    return f"{r.name or m['arch']} · {', '.join(m.get('defenses') or {}) or 'no defense'} · {r.id[-6:]}"


LOG = st.toggle("Log scale", value=False, key=f"{PAGE}:log",
                help="Bars start at zero on a linear axis, so heights compare directly; a log axis shows layers "
                     "with tiny values too, but makes 0.005 and 0.007 look far apart.")
ids = tuple(by_id)
analysed = [i for i in ids if any(r.config.get("target_run") == i for r in analyses)]
c = st.columns(2)
a_id = knobs.widget(Param("target", str, (analysed or ids)[0], "target to analyse", choices=ids), container=c[0],
                    label="Target", sticky=True, format_func=tlabel)
b_id = knobs.widget(Param("vs", str, "", "a second target, side by side", choices=("",) + ids, optional=True),
                    container=c[1], label="Side by side with (optional)",
                    format_func=lambda i: tlabel(i) if i else "none")


def short(name: str) -> str:
    return name.split("+")[0].removeprefix("body.")


def latest(target_id: str):
    rows = [r for r in analyses if r.config.get("target_run") == target_id]
    with_mi = [r for r in rows if r.config.get("attack_run")]
    return (with_mi or rows or [None])[0]


@st.cache_data(show_spinner=False, max_entries=32)
def layers_json(run_id: str, ws_path: str) -> dict:
    return ui.workspace().get(run_id).read_json("layers.json")  # DamagedRun: one message, not a traceback


def compute_box(target_id: str, key: str) -> None:
    attacks = [r for r in ws.list(kind="attack", status="done") if r.config.get("target_run") == target_id]
    opts = ("",) + tuple(r.id for r in attacks)
    al = {r.id: f"{r.config['attack']['name']} · top-1 {ui.metric_text(r.metrics.get('attack_acc_top1'))} · "
                f"{r.id[-6:]}" for r in attacks}
    atk = st.selectbox("Attack run for the MI part", opts, index=1 if attacks else 0, key=f"{PAGE}:{key}:attack",
                       format_func=lambda i: al.get(i, "none: classification FI only"))
    if not attacks:
        st.caption("No attack on this target yet: only classification Fisher information can be computed. "
                   "Run an attack on the **Attack** page for the MI part and gradient flow.")
    with st.expander("Analysis settings", icon=":material/tune:"):
        prm = knobs.widgets(list(LAYERS_PARAMS), prefix=f"{key}.", columns=3)
    if st.button("Compute Fisher information and gradient flow", key=f"{PAGE}:{key}:go",
                 icon=":material/play_arrow:"):
        ui.submit_job("layers", {"target_run": target_id, "attack_run": atk or None, "params": prm,
                                 "name": f"layers of {by_id[target_id].name or target_id}"},
                      label="layers analysis", page=PAGE, box=box)


def _fi_series(d: dict) -> dict[str, list[float]]:
    series = {"classification": [r["normalised"] for r in d["classification"]]}
    if d.get("mi_final"):
        series[f"model inversion ({d.get('mi_loss', 'attack loss')})"] = [r["normalised"] for r in d["mi_final"]]
    return series


def shared_axes(target_ids: list[str]) -> dict:
    """One y-range per plot kind over every target shown, so side-by-side plots share their axes
    (log ranges: Fisher shares and gradient norms span orders of magnitude)."""
    from mivis.figures import fisher_ratio, fisher_shares, shared_log_range
    fi, snaps, norms, ratios = [], [], [], []
    for tid in target_ids:
        rec = latest(tid)
        if rec is None:
            continue
        d = layers_json(rec.id, str(ws.path))
        fi += [fisher_shares(v) for v in _fi_series(d).values()]
        if len(_fi_series(d)) == 2:
            cls, mi = _fi_series(d).values()
            ratios.append(fisher_ratio(mi, cls))
        snaps += [fisher_shares([r["normalised"] for r in s["rows"]]) for s in d.get("mi_snapshots") or []]
        if d.get("gradflow_final"):
            norms.append([s["grad_norm"] for s in d["gradflow_final"]["stages"]])
        norms += [[s["grad_norm"] for s in f["stages"]] for f in d.get("gradflow") or []]
    rr = shared_log_range(*ratios)
    from mivis.figures import shared_range
    span = shared_log_range if LOG else shared_range  # linear axes start at zero
    return {"fisher": span(*fi), "snapshots": span(*snaps), "grad": span(*norms),
            "ratio": (rr[0] / 1.5, rr[1] * 1.5) if rr else None, "compact": True}


def show(target_id: str, key: str, axes: dict | None = None) -> None:
    t = by_id[target_id]
    st.markdown(f"#### {tlabel(target_id)}")
    rec = latest(target_id)
    if rec is None:
        if job is not None and job.active and job.params.get("target_run") == target_id:
            st.info("The layers analysis of this target is under way: its progress is below; the charts appear "
                    "here when it finishes.", icon=":material/hourglass_top:")
            return
        st.info("No layers analysis of this target yet.", icon=":material/info:")
        compute_box(target_id, key)
        return
    axes = axes or {}
    d = layers_json(rec.id, str(ws.path))
    names = [short(n) for n in d["layers"]]
    series = _fi_series(d)
    ui.fisher_bars(names, series, title="Fisher information per layer", key=f"fi:{key}:{rec.id}",
                   y_range=axes.get("fisher"), ratio_range=axes.get("ratio"), compact=bool(axes.get("compact")),
                   log=LOG)
    mm = rec.metrics
    txt = ("**What it shows:** how much each layer's weights matter to each task, as that layer's share of the "
           "task's total (each bar colour sums to 100%). Below: the attack's share ÷ classification's share; "
           "above 1×, the layer matters relatively more to the attack. "
           f"Share in the first half of the layers: classification {mm.get('fi_classification_first_half', 0):.0%}")
    if "fi_mi_first_half" in mm:
        txt += f", model inversion {mm['fi_mi_first_half']:.0%}"
    st.caption(txt + f". Analysis run `{rec.id}` (attack `{rec.config.get('attack_run')}`).")
    snaps = d.get("mi_snapshots") or []
    if d.get("mi_snapshots_note"):
        st.caption(f"**Over the attack's iterations:** none, {d['mi_snapshots_note']}.")
    if len(snaps) > 1:  # a heatmap of these read as identical rows: one sentence says how much they moved
        from mivis.figures import fisher_shares
        sh = [fisher_shares([r["normalised"] for r in s["rows"]]) for s in snaps]
        moved = [max(col) - min(col) for col in zip(*sh)]
        j = max(range(len(moved)), key=moved.__getitem__)
        st.caption(f"**Over the attack's iterations** ({snaps[0]['iteration']} to {snaps[-1]['iteration']}, "
                   f"{len(snaps)} snapshots) the attack's share per layer moved by at most "
                   f"{100 * moved[j]:.1f} percentage points (layer {names[j]}: {100 * sh[0][j]:.1f}% → "
                   f"{100 * sh[-1][j]:.1f}%)" + (", so the bars above stand for the whole attack, not only its end."
                                                  if moved[j] < 0.05 else "."))
    flows = d.get("gradflow") or []
    final = d.get("gradflow_final")
    if final:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
        st_names = [s["stage"] for s in final["stages"]]
        fig = make_subplots(specs=[[{"secondary_y": True}]])
        norms = [s["grad_norm"] for s in final["stages"]]
        fig.add_trace(go.Bar(x=st_names, y=norms, name="gradient size at the stage input"))
        fig.add_trace(go.Scatter(x=st_names, y=[s["skip_share"] for s in final["stages"]], mode="markers+lines",
                                 name="share through the skip path"), secondary_y=True)
        grng = axes.get("grad")
        fig.update_yaxes(title="gradient size ‖∂L/∂x‖" + (" (log)" if LOG else ""), type="log" if LOG else "linear",
                         secondary_y=False, **({"range": [math.log10(grng[0]), math.log10(grng[1])]} if LOG and grng
                                               else {"range": list(grng)} if grng else {"rangemode": "tozero"}))
        fig.update_yaxes(title="skip share", range=[0, 1], tickvals=[0, 0.25, 0.5, 0.75, 1], tickformat=".0%",
                         showgrid=False, secondary_y=True)  # its own round ticks, not the bars' grid (0.354)
        fig.update_layout(title="Gradient flow per stage (attack's loss)",
                          legend=dict(orientation="h", y=-0.3))
        ui.plot(fig, key=f"flow:{key}:{rec.id}", height=320)
        top = max(range(len(norms)), key=norms.__getitem__) if norms else 0
        st.caption("**What it shows:** how strongly the attack's loss pushes on each stage's input at the end of "
                   f"the attack (bars; largest at {st_names[top]}), and the share of that push carried by the skip "
                   "connection rather than the stage's own layers (line)." +
                   (" No skip share where a stage has no skip path (removed, or none in this architecture)."
                    if any(s["skip_share"] is None for s in final["stages"]) else ""))
    if flows:
        import plotly.graph_objects as go
        fig = go.Figure()
        for j, s in enumerate(flows[0]["stages"]):
            fig.add_trace(go.Scatter(x=[f["iteration"] for f in flows],
                                     y=[f["stages"][j]["grad_norm"] for f in flows], name=s["stage"],
                                     mode="lines+markers"))
        fig.update_layout(title="Gradient size per stage over iterations", xaxis_title="iteration",
                          yaxis_type="log" if LOG else "linear", yaxis_title="gradient size" + (" (log)" if LOG else ""),
                          legend=dict(orientation="h", y=-0.3))
        grng = axes.get("grad")
        if grng:
            fig.update_yaxes(range=[math.log10(grng[0]), math.log10(grng[1])] if LOG else list(grng))
        elif not LOG:
            fig.update_yaxes(rangemode="tozero")
        ui.plot(fig, key=f"flowit:{key}:{rec.id}", height=300)
        st.caption("**What it shows:** the same gradient size per stage at each recorded iteration of the attack: "
                   "whether the push on a stage grows, fades or stays as the reconstructions improve.")
    with st.expander("Recompute (e.g. with another attack run)", icon=":material/refresh:"):
        compute_box(target_id, key)


job = ui.current_job(PAGE, kinds=("layers",), box=box)  # before the charts: a running analysis is named there
if b_id:
    axes = shared_axes([a_id, b_id])
    st.caption("Side by side, both columns share every y-axis, so equal heights mean equal values.")
    left, right = st.columns(2)
    with left:
        show(a_id, "a", axes)
    with right:
        show(b_id, "b", axes)
else:
    show(a_id, "a")


def live(rec):
    if rec.status == "running" and rec.progress:
        st.caption(ui.progress_text(rec.progress) + (f" · {rec.progress.get('part')}" if rec.progress.get("part")
                                                     else ""))


if job is not None:
    with job_box:
        ui.job_panel(PAGE, job, live=live)
knobs.finish(keep=("job",))
