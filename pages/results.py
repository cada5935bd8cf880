"""Results: reconstructions next to real private faces with the judge's verdict, metrics with intervals,
likelihood histograms across runs, paired comparisons, captum attributions, and a probe with your own image."""

import streamlit as st

from mivis import ui

ui.ensure_router()

from mivis.params import Param  # noqa: E402
from mivis.runs import RunError  # noqa: E402
from mivis.report.findings import MIN_LEARNED_ACC  # noqa: E402

PAGE = "results"
st.title("Results")
knobs = ui.Knobs(PAGE)
ws = ui.workspace()

attacks = ws.list(kind="attack", status="done")
if not attacks:
    st.info("No finished attack yet. Launch one on the **Attack** page.", icon=":material/info:")
    st.page_link("pages/attack.py", label="Go to Attack", icon=":material/bolt:")
    knobs.finish()
    st.stop()
by_id = {r.id: r for r in attacks}


def target_of(r):
    t = r.config.get("target_run", "")
    return ws.get(t) if t and ws.exists(t) else None


def label(r) -> str:
    t = target_of(r)
    tname = (t.name or t.config["model"]["arch"]) if t else f"{r.config.get('target_run')} (deleted)"
    return (f"{r.config['attack']['name']} on {tname} · top-1 {ui.metric_text(r.metrics.get('attack_acc_top1'))}"
            f" · {r.id[-6:]}")


run_id = knobs.widget(Param("run", str, attacks[0].id, "the attack run to show", choices=tuple(by_id)),
                      label="Attack run", sticky=True, format_func=lambda i: label(by_id[i]))
run = by_id[run_id]


@st.cache_data(show_spinner=False, max_entries=32)
def evaluation(run_id: str, ws_path: str) -> dict:
    return ui.workspace().get(run_id).read_json("evaluation.json")  # DamagedRun: one message, not a traceback


@st.cache_data(show_spinner=False, max_entries=16)
def faces(run_id: str, ws_path: str) -> dict:
    """uint8 reconstructions and one real private training face per attacked identity."""
    from mivis.data import load_split, to_uint8
    rec = ui.workspace().get(run_id)
    t = rec.read_tensors("reconstructions.safetensors")
    split = load_split(rec.config["data"])
    ids = sorted(set(t["y"].tolist()))
    return {"x": to_uint8(t["x"].float()), "y": t["y"].tolist(),
            "real": {c: to_uint8(split.private_images(c, "train")[:1])[0] for c in ids},
            "names": split.private_names, "dataset": split.config["dataset"]}


try:
    ev = evaluation(run.id, str(ws.path))
except (OSError, ValueError, RunError) as e:  # a damaged run: named, with what is wrong; pick another above
    ui.damaged(e)
    knobs.finish()
    st.stop()
cfg = run.config
tgt = target_of(run)
tm = tgt.config["model"] if tgt else {}
st.markdown(f"**{cfg['attack']['name']}** · target `{cfg['target_run']}` ({tm.get('arch', 'deleted')}, "
            f"{', '.join(tm.get('defenses') or {}) or 'no defense'}, natural accuracy "
            f"{ui.metric_text(tgt.metrics.get('natural_acc')) if tgt else '-'}) · prior `{cfg.get('prior_run')}` · "
            f"judge **{ev['judge']['arch']}** `{ev['judge']['run']}` · {run.metrics.get('n_reconstructions', '?')} "
            f"reconstructions, {cfg['attack']['params'].get('iterations')} iterations")
if tgt and (tgt.metrics.get("natural_acc") or 0) < MIN_LEARNED_ACC:
    st.warning(f"This target did not learn its task (natural accuracy {ui.metric_text(tgt.metrics.get('natural_acc'))}"
               f", below {100 * MIN_LEARNED_ACC:.0f}%): a classifier that cannot recognise the identities leaks "
               "nothing to invert, so a low attack accuracy here is no privacy finding.", icon=":material/warning:")
m = ev["metrics"]
dlib_m = (ev.get("extra_judges") or {}).get("dlib", {}).get("attack_acc_top1")
judges_here = ["E"] + (["dlib"] if dlib_m and all("top1@dlib" in r for r in ev["per_reconstruction"]) else [])
judge = st.radio("Judge", judges_here, horizontal=True, key=f"{PAGE}:judge", index=len(judges_here) - 1,
                 format_func=lambda j: {"E": f"E: evaluation model {ev['judge']['arch']}",
                                        "dlib": "dlib: independent face embedding"}[j],
                 help="E learned from the same private images as the target; dlib never trained on them (1-NN "
                      "in its face embedding). The choice sets the headline accuracy, the faces' frames and "
                      "captions, the histogram split and the paired comparison; the independent judge comes first.")
VERDICT = {"E": "eval_top1", "dlib": "top1@dlib"}[judge]
ui.metric_row([
    {"label": f"Top-1 judged by {judge}", "value": m.get("attack_acc_top1") if judge == "E" else dlib_m,
     "help": f"attack accuracy, top-1: the share of reconstructions the judge ({judge}) names as the attacked "
             f"person; {ev.get('interval')}"},
    {"label": "Top-5 judged by E", "value": m.get("attack_acc_top5"),
     "help": "attack accuracy, top-5: the attacked person among the evaluation model's five likeliest"},
    {"label": "Target's confidence (p_T)", "value": m.get("target_likelihood"), "pct": False},
    {"label": "Target's own top-1", "value": m.get("target_success"),
     "help": "reconstructions the TARGET itself classifies as the attacked identity"},
    {"label": "KNN distance", "value": m.get("knn_dist"), "pct": False,
     "help": "squared L2 in the judge's features to the nearest private training image of the identity"},
    {"label": "Feature Fréchet dist.", "value": m.get("feature_frechet_distance"), "pct": False,
     "help": "Fréchet distance in the evaluation model's feature space (not FID)"}])
st.caption(f"[lo, hi] = {ev.get('interval', '95% bootstrap over identities')}. Chance top-1: "
           f"{1 / max(1, tm.get('num_classes', 1)):.0%}.")
ui.ceiling_note(ws, run, ev, judges=(judge,) + tuple(j for j in judges_here if j != judge))
for name, ex in (ev.get("extra_judges") or {}).items():
    if name != "dlib":
        st.caption(f"Second judge {name}: top-1 {ui.metric_text(ex.get('attack_acc_top1'))}")


def judges_panel() -> None:
    """E vs dlib vs the class's votes on this run: accuracy, agreement and E's false-positive share."""
    from mivis import votes as V
    from mivis.evaluation import dlib_judge
    from mivis.evaluation.agreement import e_false_positive
    with ui.guard():
        j = V.judges(ws, run.id, ev, n_boot=1000)
        # short cells: at 1024 px longer names pushed the last columns out of the box
        names = {"E": f"E: {ev['judge']['arch']}, saw the private images", "dlib": "dlib: never saw them",
                 "humans": "humans (Be the judge, this round)"}
        st.dataframe([{"judge": names.get(n, n), "top-1 [95% CI]": ui.metric_text(a), "identities": a["n"],
                       "per": a["unit"]} for n, a in j["accuracy"].items()], hide_index=True)
        if j["pairs"]:  # one column per pair of judges: eight columns side by side were cut at 1024 px
            pairs = {f"{p['a']} vs {p['b']}": p for p in j["pairs"]}
            rows = (("judged together", lambda p: f"{p['n']} ({p['unit']}s)"),
                    ("agree [95% CI]", lambda p: ui.metric_text(p["agree"])),
                    ("both right", lambda p: str(p["both_correct"])),
                    ("only the first right", lambda p: str(p["only_a"])),
                    ("only the second right", lambda p: str(p["only_b"])),
                    ("both wrong", lambda p: str(p["both_wrong"])))
            st.dataframe([{"": label, **{k: f(p) for k, p in pairs.items()}} for label, f in rows], hide_index=True)
        for other, fp in e_false_positive(j).items():
            if fp.get("value") is not None:
                st.markdown(f"**E's false-positive share against {other}: {ui.metric_text(fp)}** of the "
                            f"reconstructions E calls right are another person for {other} (per {fp['unit']}).")
        if "dlib" not in j["accuracy"]:
            st.caption("No dlib verdicts on this run: " + (
                f"`python -m mivis evaluate rejudge --dlib {run.id}` adds them (E's stay as they are)."
                if dlib_judge.available() else f"the independent judge is not installed (`{dlib_judge.INSTALL}`); "
                "then `python -m mivis evaluate rejudge --dlib` judges the stored runs."))
        st.page_link("pages/judge.py", label="Vote on this run's reconstructions (Be the judge)",
                     icon=":material/how_to_vote:", query_params={"run": run.id})


with st.expander("Judges: E vs dlib vs humans, and E's false positives",
                 expanded=len(judges_here) > 1, icon=":material/balance:"):
    judges_panel()

tab_faces, tab_hist, tab_attr, tab_probe = st.tabs(["Reconstructions", "Likelihood histograms", "Attributions",
                                                     "Probe with your image"])
try:
    fc = faces(run.id, str(ws.path))
except Exception as e:
    fc = None
    with tab_faces:
        ui.error(e)

# --- reconstructions next to real faces ------------------------------------------------------------------
with tab_faces:
    if fc is not None:
        rows = ev["per_reconstruction"]
        ids = sorted(fc["real"])
        names = fc["names"]
        per_page = 10
        pages = max(1, -(-len(ids) // per_page))
        pg = st.number_input("Identities page", 1, pages, 1, key=f"{PAGE}:facepage") if pages > 1 else 1
        st.caption("First image of each row: a real private training face. Then the reconstructions, each framed "
                   f"by the {'evaluation model E' if judge == 'E' else 'dlib face embedding'}'s verdict (green ✓: "
                   "the attacked person / red ✗: someone else; the Judge choice above switches) with the target's "
                   "confidence in the attacked identity (p_T)." +
                   (f" {ui.ORL_CREDIT}." if fc["dataset"] == "orl" else ""))
        for c in ids[(pg - 1) * per_page: pg * per_page]:
            idx = [i for i, y in enumerate(fc["y"]) if y == c]
            from mivis.figures import framed
            imgs = [ui.crisp(fc["real"][c], 96)] + [framed(fc["x"][i], bool(rows[i][VERDICT]), 96) for i in idx]
            caps = [f"real: {names[c]}"]
            for i in idx:  # short captions that follow the chosen judge: two lines at 96 px
                r = rows[i]
                caps.append(f"{'✓' if r[VERDICT] else '✗'} {judge} · p_T {r['p_target']:.0%}")
            st.image(imgs, caption=caps, width=96)

# --- likelihood histograms across runs --------------------------------------------------------------------
with tab_hist:
    others = [i for i in by_id if i != run.id]
    comp = st.multiselect("Overlay other attack runs (e.g. the same attack on a defended target)", others,
                          key=f"{PAGE}:overlay", format_func=lambda i: label(by_id[i]))
    split_v = st.toggle(f"Split by {judge}'s verdict (correct / wrong identity)", value=True,
                        key=f"{PAGE}:split")
    groups = []
    for rid in [run.id] + comp:
        try:
            e = evaluation(rid, str(ws.path))
        except RunError as err:  # a damaged overlay run: named and left out
            ui.damaged(err)
            continue
        t = target_of(by_id[rid])
        name = (t.name or t.config["model"]["arch"]) if t else by_id[rid].config["target_run"]
        if any(VERDICT not in x for x in e["per_reconstruction"]):
            st.caption(f"{name} ({rid[-6:]}) has no {judge} verdicts: left out of the histogram.")
            continue
        groups.append({"label": f"{name} ({rid[-6:]})", "likelihood": [x["p_target"] for x in e["per_reconstruction"]],
                       "correct": [x[VERDICT] for x in e["per_reconstruction"]]})
    ui.likelihood_histogram(groups, split=split_v)
    summary = []
    for g in groups:
        p, c = g["likelihood"], g["correct"]
        hi = [ok for x, ok in zip(p, c) if x >= 0.9]
        summary.append({"run": g["label"], "reconstructions": len(p), "judged correct": sum(c),
                        "confidence ≥ 90% (p_T)": len(hi), "of those wrong": len(hi) - sum(hi)})
    st.dataframe(summary, hide_index=True)
    st.caption("The paper's Fig. 2: both models reach high likelihood; a defense works when its high-likelihood "
               "reconstructions are more often the wrong person.")
    if len(comp) == 1:
        from mivis.evaluation import compare_runs
        from mivis.evaluation.compare import JUDGE_METRIC
        try:
            d = compare_runs(ws, run.id, comp[0], JUDGE_METRIC[judge])
            v = 100 * d["value"]
            verdict = (f"**resolved: {'this run' if v < 0 else 'the other run'} leaks {abs(v):.0f} pp less**"
                       if d["resolved"] else "**not resolved** (the interval contains 0: neither run is shown to "
                       "leak less)")
            st.markdown(f"Paired difference in top-1 attack accuracy under {judge} (this run − the other): "
                        f"{100 * d['value']:+.1f} pp [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] over "
                        f"{d['n']} identities: {verdict}." +
                        ("" if d.get("same_starting_latents") else " Note: different seeds or restarts, so the "
                         "starting latents differ."))
        except Exception as e:
            st.info(f"No paired comparison: {ui.one_line(e)}", icon=":material/info:")

# --- attributions ---------------------------------------------------------------------------------------
with tab_attr:
    from mivis.analysis import ATTRIBUTION_METHODS
    if fc is not None:
        ac = st.columns(3)
        ident = ac[0].selectbox("Identity", sorted(fc["real"]), key=f"{PAGE}:attr_id",
                                format_func=lambda c: fc["names"][c])
        from mivis.analysis.attributions import METHOD_LABELS
        method = ac[1].selectbox("Method", ATTRIBUTION_METHODS, key=f"{PAGE}:attr_method",
                                 format_func=lambda s: METHOD_LABELS.get(s, s.replace("_", " ")))
        n_rec = sum(1 for y in fc["y"] if y == ident)
        which = ac[2].number_input("Reconstruction", 0, max(0, n_rec - 1), 0, key=f"{PAGE}:attr_idx")

        @st.cache_data(show_spinner=False, max_entries=64)
        def attribution(run_id: str, identity: int, method: str, index: int, ws_path: str) -> dict:
            from mivis.analysis.runs_view import attribution_pair
            return attribution_pair(ui.workspace(), run_id, identity, method, index)

        if st.button("Compute attribution", key=f"{PAGE}:attr_go", icon=":material/visibility:"):
            st.session_state[f"{PAGE}:attr_want"] = (run.id, int(ident), method, int(which))
        want = st.session_state.get(f"{PAGE}:attr_want")
        if want and want[0] == run.id:
            try:
                with st.spinner("captum: attributing the attacked class"):
                    a = attribution(*want, str(ws.path))
                cols = st.columns(4)
                what = METHOD_LABELS.get(want[2], want[2].replace("_", " "))
                cols[0].image(ui.crisp(ui.to_display(a["reconstruction"]), 192), caption="reconstruction")
                cols[1].image(ui.overlay(a["reconstruction"], a["map_reconstruction"], 192), caption=f"{what} on it")
                cols[2].image(ui.crisp(ui.to_display(a["real"]), 192), caption="real private face")
                cols[3].image(ui.overlay(a["real"], a["map_real"], 192), caption=f"{what} on it")
                st.caption(f"Attribution for the attacked identity {fc['names'][want[1]]} under the TARGET model. "
                           "Red: pixels that raise the class score; blue: pixels that lower it. "
                           + ("Occlusion: how much greying out each small patch lowers the class score. "
                              if want[2] == "occlusion" else "") +
                           "The colour saturates at the 99th percentile of each map "
                           f"({a['saturated'][0]} and {a['saturated'][1]} pixels are beyond it), so a few extreme "
                           "pixels do not wash out the rest.")
                corner = max(a.get("corner_share") or [0])
                if corner >= 0.08:
                    st.info(f"{corner:.0%} of a map sits in the top-left corner (1.6% of the image). That is the "
                            "model, not the method: ResNet-style shortcuts downsample with 1x1 stride-2 "
                            "convolutions that read the top-left pixel of every 2x2 cell, so on small images "
                            "the shortcut path ends in the top-left corner, and the model uses it (on the "
                            "classroom ResNet-18, greying that 4x4 corner lowered one identity's score by 3 "
                            "logits, more than greying the middle of the face).", icon=":material/info:")
            except Exception as e:
                ui.error(e)


# --- probe the target with an uploaded face ----------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=4)
def classifier(run_id: str, ws_path: str):
    """A finished classifier, loaded once per server and shared read-only by every session."""
    from mivis.train import load_classifier
    return load_classifier(ui.workspace(), run_id, "cpu")[0].float()


def decode(data: bytes, size: int, channels: int):
    """Bytes from the browser -> a [-1, 1] tensor (1, C, H, W); a file that is not an image is refused."""
    import io

    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from mivis.data._images import square_crop_resize
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            arr = square_crop_resize(im, size, channels)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"it is not a readable image ({type(e).__name__})") from None
    return torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0)[None]


with tab_probe:
    st.markdown("Upload a face image (PNG, JPEG, PGM, BMP). It is centre-cropped and resized to the target's "
                "input; the target and the evaluation model say whom they see.")
    up = st.file_uploader("Face image", type=["png", "jpg", "jpeg", "pgm", "bmp"], key=f"{PAGE}:upload")
    if up is not None and tgt is None:
        st.error("The target of this attack run was deleted; choose another run.")
    elif up is not None:
        try:
            x = decode(up.getvalue(), tm["img_size"], tm["in_chans"])
        except ValueError as e:
            st.error(f"Could not use {up.name!r}: {e}. Upload a PNG, JPEG, PGM or BMP face image.",
                     icon=":material/broken_image:")
        else:
            import torch
            from mivis.data import load_split
            names = load_split(cfg["data"]).private_names
            table = []
            for who, rid in (("target", tgt.id), ("evaluation model", ev["judge"]["run"])):
                try:
                    with torch.no_grad():
                        p = classifier(rid, str(ws.path))(x).softmax(1)[0]
                except Exception as e:
                    st.warning(f"The {who} could not be loaded: {ui.one_line(e)}")
                    continue
                top = p.topk(min(3, len(p)))
                table.append({"model": who, **{f"#{k + 1}": f"{names[int(i)]} ({float(v):.0%})"
                                               for k, (v, i) in enumerate(zip(top.values, top.indices))}})
            cc = st.columns([1, 3])
            cc[0].image(ui.crisp(ui.to_display(x[0].numpy()), 160), caption="as the models see it")
            cc[1].dataframe(table, hide_index=True)
knobs.finish()
