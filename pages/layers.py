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
    return {"fisher": shared_log_range(*fi), "snapshots": shared_log_range(*snaps), "grad": shared_log_range(*norms),
            "ratio": (rr[0] / 1.5, rr[1] * 1.5) if rr else None, "compact": True}


def show(target_id: str, key: str, axes: dict | None = None) -> None:
    t = by_id[target_id]
    st.markdown(f"#### {tlabel(target_id)}")
    rec = latest(target_id)
    if rec is None:
        st.info("No layers analysis of this target yet.", icon=":material/info:")
        compute_box(target_id, key)
        return
    axes = axes or {}
    d = layers_json(rec.id, str(ws.path))
    names = [short(n) for n in d["layers"]]
    series = _fi_series(d)
    ui.fisher_bars(names, series, title="Fisher information per layer", key=f"fi:{key}:{rec.id}",
                   y_range=axes.get("fisher"), ratio_range=axes.get("ratio"), compact=bool(axes.get("compact")))
    mm = rec.metrics
    txt = ("Each loss normalised on its own: its share of its total per layer, on a log scale (one layer can "
           "hold 95% and the rest still be compared). Below: model inversion's share ÷ classification's share; "
           "above 1, the layer matters relatively more to the attack. "
           f"Share in the first half of the layers: classification {mm.get('fi_classification_first_half', 0):.0%}")
    if "fi_mi_first_half" in mm:
        txt += f", model inversion {mm['fi_mi_first_half']:.0%}"
    st.caption(txt + f". Analysis run `{rec.id}` (attack `{rec.config.get('attack_run')}`).")
    snaps = d.get("mi_snapshots") or []
    if snaps:
        import plotly.graph_objects as go

        from mivis.figures import fisher_shares
        z = [[math.log10(v) if v > 0 else None for v in fisher_shares([r["normalised"] for r in s["rows"]])]
             for s in snaps]
        rng = axes.get("snapshots")
        fig = go.Figure(go.Heatmap(z=z, x=names, y=[f"iteration {s['iteration']}" for s in snaps],
                                   colorscale="Viridis", zmin=math.log10(rng[0]) if rng else None,
                                   zmax=math.log10(rng[1]) if rng else None,
                                   colorbar=dict(title="share<br>(log10)")))
        fig.update_layout(title="Inversion Fisher info over iterations",
                          xaxis_title="layer (input → output)")
        fig.update_xaxes(tickangle=-60, automargin=True, tickmode="array", tickvals=names, ticktext=names)
        ui.plot(fig, key=f"snap:{key}:{rec.id}", height=380)
    flows = d.get("gradflow") or []
    final = d.get("gradflow_final")
    if final:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
        st_names = [s["stage"] for s in final["stages"]]
        fig = make_subplots(specs=[[{"secondary_y": True}]])
        fig.add_trace(go.Bar(x=st_names, y=[s["grad_norm"] for s in final["stages"]],
                             name="gradient norm at the stage input"))
        fig.add_trace(go.Scatter(x=st_names, y=[s["skip_share"] for s in final["stages"]], mode="markers+lines",
                                 name="skip-path share"), secondary_y=True)
        grng = axes.get("grad")
        fig.update_yaxes(title="gradient norm ‖∂L/∂x‖ (log)", type="log", secondary_y=False,
                         range=[math.log10(grng[0]), math.log10(grng[1])] if grng else None)
        fig.update_yaxes(title="skip share", range=[0, 1], secondary_y=True)
        fig.update_layout(title="Gradient flow per stage (attack's loss)",
                          legend=dict(orientation="h", y=-0.3))
        ui.plot(fig, key=f"flow:{key}:{rec.id}", height=320)
        if any(s["skip_share"] is None for s in final["stages"]):
            st.caption("No skip share where a stage has no skip path (removed, or none in this architecture).")
    if flows:
        import plotly.graph_objects as go
        fig = go.Figure()
        for j, s in enumerate(flows[0]["stages"]):
            fig.add_trace(go.Scatter(x=[f["iteration"] for f in flows],
                                     y=[f["stages"][j]["grad_norm"] for f in flows], name=s["stage"],
                                     mode="lines+markers"))
        fig.update_layout(title="Gradient norm per stage over iterations", xaxis_title="iteration",
                          yaxis_type="log", yaxis_title="gradient norm (log)", legend=dict(orientation="h", y=-0.3))
        if axes.get("grad"):
            fig.update_yaxes(range=[math.log10(axes["grad"][0]), math.log10(axes["grad"][1])])
        ui.plot(fig, key=f"flowit:{key}:{rec.id}", height=300)
    with st.expander("Recompute (e.g. with another attack run)", icon=":material/refresh:"):
        compute_box(target_id, key)


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


job = ui.current_job(PAGE, kinds=("layers",), box=box)
if job is not None:
    with job_box:
        ui.job_panel(PAGE, job, live=live)
knobs.finish(keep=("job",))
