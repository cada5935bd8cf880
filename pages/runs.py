"""Runs: the registry. Filter, inspect, compare two, delete, export images and metrics."""
import csv
import datetime as dt
import io
import json

import streamlit as st

from mivis import ui

ui.ensure_router()
import mivis.votes  # noqa: E402,F401  (registers its delete guard: runs with class votes go only with the cascade)
from mivis.runs import STATUSES, RunError

PAGE = "runs"
st.title("Runs")
st.caption("Every trained model, prior, attack and analysis is a run with its config, seed, data fingerprint, "
           "versions and files, stored in the workspace.")
knobs = ui.Knobs(PAGE)
ws = ui.workspace()
box = st.container()

if "runs:flash" in st.session_state:
    box.success(st.session_state.pop("runs:flash"), icon=":material/delete:")

runs = ws.list()
kinds = sorted({r.kind for r in runs})
f = st.columns([2, 2, 3])
sel_kinds = f[0].multiselect("Kind", kinds, key=f"{PAGE}:kinds", placeholder="all kinds")
sel_status = f[1].multiselect("Status", STATUSES, key=f"{PAGE}:status", placeholder="any status")
text = f[2].text_input("Search", key=f"{PAGE}:q", placeholder="id, name or config text")
shown = [r for r in runs if (not sel_kinds or r.kind in sel_kinds) and (not sel_status or r.status in sel_status)
         and (not text or text.lower() in (r.id + " " + r.name + " " + json.dumps(r.config)).lower())]


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not ({"value", "lo", "hi"} <= set(v)):
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


def headline(r) -> str:
    m = r.metrics
    parts = []
    for k in ("natural_acc", "attack_acc_top1", "attack_acc_top5"):
        if k in m:
            parts.append(f"{k.replace('_', ' ')} {ui.metric_text(m[k])}")
    extra = m.get("extra_judges") if isinstance(m.get("extra_judges"), dict) else {}
    if isinstance(extra.get("dlib"), dict) and extra["dlib"].get("attack_acc_top1"):  # the independent judge
        parts.append(f"attack acc top1 under dlib {ui.metric_text(extra['dlib']['attack_acc_top1'])}")
    return " · ".join(parts)


if not runs:
    st.info("The workspace has no runs yet. Train one on the **Architecture** page.", icon=":material/info:")
    st.stop()

st.dataframe(  # the headline numbers before the long names: at 1400 px they were scrolled out of sight
    [{"id": r.id, "kind": r.kind, "status": r.status, "metrics": headline(r), "name": r.name,
      "created": dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M")}
     for r in shown],
    hide_index=True, width="stretch", height=min(400, 38 + 35 * max(1, len(shown))),
    column_config={"metrics": st.column_config.TextColumn(width="large"),
                   "name": st.column_config.TextColumn(width="medium")})
st.caption(f"{len(shown)} of {len(runs)} runs")

ids = [r.id for r in runs]
by_id = {r.id: r for r in runs}
url_run = ui.url_choice("run", ids, what="run", box=box)
url_vs = ui.url_choice("vs", ids, what="comparison run", box=box)
for k, v in (("run", url_run), ("vs", url_vs)):
    if v is not None:
        st.session_state[f"{PAGE}:{k}"] = v
    elif st.session_state.get(f"{PAGE}:{k}") not in ids + [None]:
        st.session_state[f"{PAGE}:{k}"] = None  # selected earlier, deleted since

options = [r.id for r in shown]
for k in ("run", "vs"):  # keep a selection visible even when the filter hides it
    v = st.session_state.get(f"{PAGE}:{k}")
    if v and v not in options:
        options.append(v)
pick = st.columns(2)
run_id = pick[0].selectbox("Run", options, index=None, key=f"{PAGE}:run", placeholder="choose a run",
                           format_func=lambda i: ui.run_label(by_id[i]))
vs_id = pick[1].selectbox("Compare with", [o for o in options if o != run_id], index=None, key=f"{PAGE}:vs",
                          placeholder="optional: a second run", format_func=lambda i: ui.run_label(by_id[i]))
for k, v in (("run", run_id), ("vs", vs_id)):
    if v:
        st.query_params[k] = v
    elif k in st.query_params:
        del st.query_params[k]


def metrics_csv(r) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["metric", "value", "lo", "hi", "n"])
    for k, v in flat(r.metrics).items():
        if isinstance(v, dict):
            w.writerow([k, v.get("value"), v.get("lo"), v.get("hi"), v.get("n")])
        elif not isinstance(v, (list, dict)):
            w.writerow([k, v, "", "", ""])
    return buf.getvalue()


def show_run(r, key: str) -> None:
    st.markdown(f"#### {ui.plain(r.name or r.kind)}")
    st.code(r.id, language=None)
    st.markdown(f"**{ui.plain(r.kind)}** · status **{r.status}** · seed {r.seed} · created "
                f"{dt.datetime.fromtimestamp(r.created):%Y-%m-%d %H:%M:%S}")
    if r.damage:
        st.error(f"Run `{r.id}` is damaged: {'; '.join(r.damage)}.", icon=":material/broken_image:")
    if r.error:
        st.warning(ui.plain(r.error))
    opens = {"attack": ("pages/results.py", "run", "Open in Results"),
             "analysis": ("pages/layers.py", "target", "Open in Layers")}
    if r.kind in opens and r.status == "done":
        page, qp, text = opens[r.kind]
        value = r.id if qp == "run" else r.config.get("target_run")
        if value and ws.exists(value):
            st.page_link(page, label=text, icon=":material/open_in_new:", query_params={qp: value})
    if r.parents:
        st.markdown("Parents: " + ", ".join(f"`{p}`" + ("" if ws.exists(p) else " (deleted)") for p in r.parents))
    nums = {k: v for k, v in r.metrics.items() if isinstance(v, (int, float, dict)) and not isinstance(v, bool)}
    if nums:
        items = [{"label": ui.metric_words(k), "value": v,
                  "pct": ui.metric_is_fraction(k)} for k, v in list(nums.items())[:6]]
        with ui.guard():
            ui.metric_row(items, per_row=2)  # two runs side by side: half a page each
    with ui.guard():  # a damaged history is one message; the rest of the run still shows
        rows = r.read_json("history.json", optional=True)
        if rows is not None:
            import plotly.graph_objects as go
            fig = go.Figure()
            for col in ("loss", "train_acc", "test_acc"):
                pts = [(x["epoch"], x[col]) for x in rows if isinstance(x.get("epoch"), (int, float))
                       and isinstance(x.get(col), (int, float))]
                if pts:
                    fig.add_trace(go.Scatter(x=[a for a, _ in pts], y=[b for _, b in pts], name=col,
                                             mode="lines+markers"))
            fig.update_layout(title="training history", xaxis_title="epoch")
            ui.plot(fig, key=f"hist:{key}", height=260)
    pngs = sorted(p for p in r.dir.rglob("*.png") if p.is_file()) if r.dir.is_dir() else []
    images = {}
    for p in pngs:
        name = p.relative_to(r.dir).as_posix()
        with ui.guard():
            images[name] = r.read_image(name)
    for name, data in list(images.items())[:6]:
        st.image(ui.png_crisp(data, 256), caption=name, width="content")
    with st.expander("Config", icon=":material/tune:"):
        st.json(r.config, expanded=1)
    with st.expander("Versions and data fingerprint", icon=":material/fingerprint:"):
        st.json({"versions": r.versions, "data_fingerprint": r.data_fingerprint})
    e = st.columns(3)
    with e[0]:
        ui.download_json("Metrics JSON", r.metrics, f"{r.id}-metrics.json", key=f"mj:{key}")
    e[1].download_button("Metrics CSV", metrics_csv(r), file_name=f"{r.id}-metrics.csv", mime="text/csv",
                         key=f"mc:{key}", icon=":material/download:")
    with e[2]:
        ui.download_json("Config JSON", {"id": r.id, "kind": r.kind, "config": r.config, "parents": r.parents,
                                          "seed": r.seed, "versions": r.versions}, f"{r.id}-config.json",
                         key=f"cj:{key}")
    for i, (name, data) in enumerate(images.items()):
        st.download_button(f"Image {name}", data, file_name=f"{r.id}-{name.replace('/', '-')}",
                           mime="image/png", key=f"png:{key}:{i}", icon=":material/image:")


def delete_box(r) -> None:
    kids = ws.descendants(r.id)
    done_kids = [k for k in kids if k.status == "done"]
    with st.container(border=True):
        st.markdown("**Delete this run**" + (f" — {len(kids)} run(s) were made from it: "
                                            f"{', '.join(k.id for k in kids[:5])}{' ...' if len(kids) > 5 else ''}"
                                            if kids else ""))
        sure = st.checkbox("I understand its files are deleted", key=f"{PAGE}:sure:{r.id}")
        cascade = False
        from mivis.votes import vote_counts
        n_votes = vote_counts(ws, [r.id]).get(r.id, 0)
        if done_kids or n_votes:
            what = ([f"the {len(kids)} run(s) made from it"] if done_kids else []) + \
                ([f"the class's {n_votes} vote(s) on it (Be the judge)"] if n_votes else [])
            cascade = st.checkbox(f"Also delete {' and '.join(what)} (cascade)", key=f"{PAGE}:cascade:{r.id}",
                                  help="Without them this run cannot be deleted.")
        if st.button("Delete run", disabled=not sure or (bool(done_kids or n_votes) and not cascade),
                     icon=":material/delete:",
                     key=f"{PAGE}:del"):
            try:
                gone = ws.delete(r.id, cascade=cascade)
            except RunError as e:
                ui.damaged(e)
                return
            st.session_state["runs:flash"] = f"Deleted {', '.join(gone)}."
            for k in ("run", "vs"):
                if st.session_state.get(f"{PAGE}:{k}") in gone:
                    del st.session_state[f"{PAGE}:{k}"]
                if st.query_params.get(k) in gone:
                    del st.query_params[k]
            st.rerun()


if run_id and not vs_id:
    show_run(by_id[run_id], "a")
    delete_box(by_id[run_id])
elif run_id and vs_id:
    a, b = by_id[run_id], by_id[vs_id]
    st.subheader("Comparison")
    # the columns carry the runs' names (never "A" and "B"): left run first, as in the columns below
    na, nb = ui.run_short(a, 20), ui.run_short(b, 20)  # 28 characters pushed the second run off at 1024 px
    if na == nb:
        na, nb = f"{na} (left)", f"{nb} (right)"
    fa, fb = flat(a.config), flat(b.config)
    diff = [{"setting": k, na: json.dumps(fa.get(k)), nb: json.dumps(fb.get(k))}
            for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
    if diff:
        st.markdown(f"**{ui.settings_differ(len(diff))}**")
        st.dataframe(diff, hide_index=True, width="stretch")
    else:
        st.markdown("**Same configuration** (different seeds or repeats).")
    ma, mb = flat(a.metrics), flat(b.metrics)
    rows = []
    for k in sorted(set(ma) | set(mb)):
        va, vb = ma.get(k), mb.get(k)
        if isinstance(va, (list,)) or isinstance(vb, (list,)):
            continue
        base = k.rsplit(".", 1)[-1]
        pct = ui.metric_is_fraction(base)
        rows.append({"metric": ui.metric_words(k),
                     na: ui.metric_text(va, pct) if va is not None else "-",
                     nb: ui.metric_text(vb, pct) if vb is not None else "-"})
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    if a.kind == b.kind == "attack" and a.status == b.status == "done":
        from mivis.evaluation import compare_runs
        try:
            d = compare_runs(ws, a.id, b.id)
            st.markdown(ui.paired_words(d, ui.plain(na), ui.plain(nb)))
        except Exception as e:
            st.info(f"No paired comparison: {ui.one_line(e)}", icon=":material/info:")
    left, right = st.columns(2)
    with left:
        show_run(a, "a")
    with right:
        show_run(b, "b")
