"""Architecture: pick a model, edit its skip connections per stage, set defenses, see parameter counts
live, and train it as a background job."""
import dataclasses
import json

import streamlit as st

from mivis import ui

ui.ensure_router()

from mivis.data import DATA_PARAMS  # noqa: E402
from mivis.defenses import DEFENSES  # noqa: E402
from mivis.models import ARCHITECTURES, same_architecture  # noqa: E402
from mivis.params import Param, ParamError  # noqa: E402
from mivis.train import ROLES, TRAIN_PARAMS  # noqa: E402

PAGE = "architecture"
st.title("Architecture")
st.caption("Choose a classifier, switch its skip connections per stage, add defenses, and train it. "
           "Parameter counts follow every change; **Train** runs in the background job queue.")
knobs = ui.Knobs(PAGE)
banner = st.container()

ROLE = Param("role", str, "target", "target: trained on the private identities and attacked; eval: the "
             "independent judge of attacks (use another architecture); public: pre-training on the public "
             "identities (the starting point of TL-DMI)", choices=ROLES)

top = st.columns([2, 1, 1])
arch = knobs.widget(TRAIN_PARAMS["arch"], container=top[0], label="Architecture",
                    options=[n for n in ARCHITECTURES.names() if not ARCHITECTURES.get(n).meta.get("any_timm")],
                    format_func=lambda n: f"{n}: {ARCHITECTURES.get(n).help}")
any_timm = knobs.widget(Param("timm_arch", str, None, "any timm model name (timm.list_models(); nothing pretrained "
                              "is fetched): stages come from the model's feature_info, skips from its block types; "
                              "overrides the menu above", optional=True),
                        container=top[0], label="…or any timm architecture (e.g. convnext_atto, regnetx_002)")
timm_bad = False
if any_timm:
    try:
        ARCHITECTURES.get(any_timm)
        arch = any_timm
    except ParamError as e:
        ui.error(e, box=top[0])
        timm_bad = True
role = knobs.widget(ROLE, container=top[1], label="Role")
arch_params = knobs.widgets(ARCHITECTURES.get(arch).params, prefix="arch_", container=top[2])
counts_box = st.container()

with st.expander("Data", expanded=False, icon=":material/dataset:"):
    # 32 px by default, like the classroom target, its judge and the shipped 32 px prior (a 64 px target
    # trained with the page's defaults could not be judged by the classroom judge)
    data = knobs.widgets([dataclasses.replace(p, default=32) if p.name == "image_size" else p for p in DATA_PARAMS],
                         columns=3)
    if data["dataset"] == "orl":
        st.caption(ui.ORL_CREDIT)

blocked = False  # a setting the library refuses: shown in place, Train disabled
try:
    split = ui.load_split_on_click(PAGE, data)  # a data folder is read only after a click, never from the URL
    c, h, _ = split.image_shape
    n_classes = len(split.public_names) if role == "public" else split.num_classes
except Exception as e:  # DataError, ParamError: a readable message; the rest of the page still works
    ui.error(e)
    blocked = True
    c, h, n_classes = data["channels"], data["image_size"], data["n_private"]


@st.cache_data(show_spinner=False, max_entries=512)
def anatomy(arch: str, n_classes: int, c: int, h: int, arch_params_json: str, defenses_json: str) -> dict:
    """Shapes only (meta device: instant even for ResNet-152): counts, stages, layer groups."""
    import torch

    from mivis.defenses import instantiate
    from mivis.models import model_config, model_from_config
    from mivis.surgery import describe, layer_groups
    defenses = json.loads(defenses_json)
    mcfg = model_config(arch, n_classes, c, h, json.loads(arch_params_json), defenses)
    objs = instantiate(mcfg["defenses"], mcfg)
    with torch.device("meta"):
        model = model_from_config(mcfg, phase="final")
    allowed = None
    for d in objs:
        names = d.trainable_names(model)
        if names is not None:
            allowed = names if allowed is None else allowed & names
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for n, p in model.named_parameters() if allowed is None or n in allowed)
    mode = defenses.get("skips", {}).get("mode", "both")
    out = {"total": total, "trained": trained,
           "groups": [{"name": g["name"], "n_params": g["n_params"]} for g in layer_groups(model)]}
    try:
        out["stages"] = describe(model, mode)
    except TypeError:  # a family without a stage map
        out["stages"] = None
    if allowed is not None and out["stages"] is not None:  # TL-DMI: show what is frozen in the stage diagram
        names = [n for n, _ in model.named_parameters() if n.startswith("body.")]
        in_block = set()
        for st_ in out["stages"]["stages"]:
            for b in st_["blocks"]:
                ps = [n for n in names if n.startswith(f"body.{b['name']}.")]
                in_block.update(ps)
                b["frozen"] = bool(ps) and not any(n in allowed for n in ps)
        stem = []  # the parameters before the first block (conv1 + bn1 in a ResNet)
        for n in names:
            if n in in_block:
                break
            stem.append(n)
        out["stages"]["stem_frozen"] = bool(stem) and not any(n in allowed for n in stem)
    try:
        from mivis.defenses.tldmi import default_depth
        out["default_freeze"] = default_depth(model)
    except Exception:
        out["default_freeze"] = None
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def _imported_stages(mcfg_json: str) -> dict:
    import torch

    from mivis.models import model_from_config
    from mivis.surgery import describe
    with torch.device("meta"):
        return describe(model_from_config(json.loads(mcfg_json)))


def get_anatomy_of(mcfg: dict) -> dict | None:
    try:
        return _imported_stages(json.dumps(mcfg, sort_keys=True))
    except (ParamError, ValueError, TypeError) as e:
        ui.error(e)
        return None


def get_anatomy(defenses: dict) -> dict | None:
    try:
        return anatomy(arch, n_classes, c, h, json.dumps(arch_params, sort_keys=True),
                       json.dumps(defenses, sort_keys=True))
    except (ParamError, ValueError, TypeError) as e:
        ui.error(e)
        return None


# --- skip connections per stage ----------------------------------------------------------------------
defenses: dict = {}
base = get_anatomy({})
st.subheader("Skip connections per stage")
desc = base["stages"] if base else None
family = ARCHITECTURES.get(arch).meta.get("family")
diagram_box = None  # where the stage diagram goes (architectures with skips to toggle)
if desc is None or not desc["toggleable"]:
    if family == "repvgg":
        st.markdown("RepVGG's identity and 1x1 branches exist only at training time: they fuse into one 3x3 "
                    "conv that computes **the same function**, so input gradients, and with them model "
                    "inversion, are identical. Measure it:")
        if st.button("Check train-time vs fused model", key=f"{PAGE}:repvgg", icon=":material/science:"):
            from mivis.surgery import repvgg_equivalence
            with st.spinner("building both forms and comparing"):
                eq = repvgg_equivalence(in_chans=c, img_size=h, num_classes=n_classes)
            st.dataframe([{"quantity": k.replace("_", " "), "value": f"{v:.3g}" if isinstance(v, float) else str(v)}
                          for k, v in eq.items()], hide_index=True)
    elif desc is not None and desc.get("uncontrolled"):
        st.graphviz_chart(ui.stage_dot(desc), width="stretch")
        st.caption(f"{arch}: stages from the model's own feature_info; no stage has a skip mivis can scale.")
    else:
        st.info(f"{arch} has no skip connections (the reference architecture): nothing to toggle.",
                icon=":material/block:")
elif "skips" in DEFENSES:
    stages = desc["stages"]
    tog = desc["toggleable"]
    ssf_default = 0.01 if desc["skip_kind"] == "concatenative" else 0.2

    def preset(kind: str) -> None:
        for i in tog:
            st.session_state[knobs.key(f"skip{i + 1}")] = not (kind != "full" and i == tog[-1] and kind == "rolss")
            st.session_state[knobs.key(f"ssf{i + 1}")] = ssf_default if (kind == "ssf" and i == tog[-1]) else 1.0

    p = st.columns([1, 1, 1, 3])
    # short labels (longer ones were cut to "Full (all…" at 1024 px); the tooltip says what each sets
    p[0].button("Full", on_click=preset, args=("full",), key=f"{PAGE}:p_full", help="every stage keeps its skips")
    p[1].button("RoLSS", on_click=preset, args=("rolss",), key=f"{PAGE}:p_rolss",
                help="remove the last stage's skips (the RoLSS paper's text)")
    p[2].button(f"SSF x{ssf_default:g}", on_click=preset, args=("ssf",), key=f"{PAGE}:p_ssf",
                help=f"scale the last stage's skips by {ssf_default:g} (SSF)")
    p[3].caption("s = 1 keeps a stage's skips, 0 removes them (RoLSS), between scales them (SSF). "
                 f"Skip kind: **{desc['skip_kind']}**. Only stages whose blocks really carry a skip have a toggle.")
    cols = st.columns(len(stages))
    scales = []
    for col, s in zip(cols, stages):
        i = s["index"]
        with col.container(border=True):
            n_skip = sum(b["skip"] for b in s["blocks"])
            nb = len(s["blocks"])
            st.markdown(f"**{s['name']}**  \n{nb} block{'s' if nb != 1 else ''}, {n_skip} with a skip")
            if i in tog:
                on = knobs.widget(Param(f"skip{i + 1}", bool, True, f"keep the skip connections of {s['name']}"),
                                  label="skips")
                sc = knobs.widget(Param(f"ssf{i + 1}", float, 1.0, "skip scale s (SSF); 1 = original",
                                        min=0.0, max=1.0, step=0.01), label="scale s", disabled=not on)
                scales.append(sc if on else 0.0)
            else:
                st.caption("no skip: nothing to toggle")
                scales.append(1.0)
    mode = "both"
    if family == "vit":
        mode = knobs.widget(DEFENSES.get("skips").params["mode"], name="skip_mode", label="ViT residuals scaled")
    if any(x != 1.0 for x in scales) or mode != "both":
        defenses["skips"] = {"scales": scales, "mode": mode}
    chains = [(st_, sc) for st_, sc in zip(stages, scales) if desc["skip_kind"] == "concatenative" and sc < 0.1]
    if chains:
        st.warning(" ".join(f"{st_['name']} becomes {'a plain' if sc == 0 else 'nearly a plain'} chain of "
                            f"{len(st_['blocks'])} layers ({2 * len(st_['blocks'])} convolutions, no skip)."
                            for st_, sc in chains)
                   + " Such chains train from scratch and may not train at all on small data: in mivis's CPU "
                     "study on ORL, DenseNet-121 with its last dense block's skips removed stayed near chance "
                     "(docs/findings.md). Check the trained model's natural accuracy before reading its attack "
                     "numbers.", icon=":material/warning:")
    diagram_box = st.container()  # drawn once every defense is known (TL-DMI's frozen layers show in it)

if desc is not None and desc.get("uncontrolled"):
    st.warning("Skips mivis cannot control in this model: "
               + " ".join(f"**{u['type']}** ({u['blocks']} block{'s' if u['blocks'] != 1 else ''}): {u['why']}."
                          for u in desc["uncontrolled"]), icon=":material/help:")

# --- other defenses, generated from the registry ------------------------------------------------------
others = [e for e in DEFENSES.entries() if e.name != "skips"]
if others:
    st.subheader("Defenses")
    cols = st.columns(3)
    for k, entry in enumerate(others):
        with cols[k % 3].container(border=True):
            on = knobs.widget(Param(f"use_{entry.name}", bool, False, entry.help),
                              label=ui.defense_words(entry.name, entry.meta.get("paper")))
            if not on:
                continue
            if entry.name == "tldmi":
                pre = get_anatomy(defenses)
                if pre is None:
                    continue
                n = len(pre["groups"])
                fp = Param("tldmi_freeze", int, pre["default_freeze"] or 0,
                           "layer groups frozen from the input (conv+BN = one group)", min=0, max=n - 1)
                k_ = knobs.widget(fp, label="frozen layer groups k", slider=True)
                first = pre["groups"][k_]["name"]
                st.caption(f"frozen: the first {k_} of {n} groups; training starts at `{first}`. "
                           "Needs a public pre-trained run of this architecture (Start from, below).")
                defenses["tldmi"] = {"freeze": k_}
            else:
                defenses[entry.name] = knobs.widgets(entry.params, prefix=f"{entry.name}_")

ana = get_anatomy(defenses)
if ana is None:  # the defenses do not combine (the message is shown above): keep the counts of the bare model
    blocked = True
    ana = base
    counts_box.caption("Counts below are for the architecture without the defenses that do not combine.")
shaped = ana if diagram_box is not None else None
if shaped is not None and shaped.get("stages") is not None:
    with diagram_box:
        ui.stage_diagram(shaped["stages"])
        st.caption("Blue arcs: skip kept; dashed orange: scaled by s; no arc: removed (red blocks); grey: frozen "
                   "(not trained on private data, TL-DMI). Long stages are shortened to their first and last blocks.")
if ana is not None:
    with counts_box:
        m = st.columns(2) + st.columns(2)  # two a row: four in one row cut "11,18…" off at 1024 px
        m[0].metric("Parameters |θ_T|", f"{ana['total']:,}")
        m[1].metric("Trained on private data |θ_C|", f"{ana['trained']:,}", help="parameters that are not frozen")
        m[2].metric("Fraction trained", f"{ana['trained'] / max(1, ana['total']):.1%}")
        m[3].metric("Classes", f"{n_classes}", help=f"{h}x{h} px, {c} channel{'s' if c > 1 else ''}")

# --- training ------------------------------------------------------------------------------------------
st.subheader("Train")
public_runs = [r for r in ui.workspace().list(kind="public", status="done")  # any spelling of the same architecture
               if same_architecture(r.config["model"]["arch"], arch)]
init_choices = ("",) + tuple(r.id for r in public_runs)
labels = {r.id: ui.run_label(r) for r in public_runs}
with st.container(border=True):
    train = knobs.widgets([p for p in TRAIN_PARAMS if p.name not in ("arch", "init_run", "init_weights", "device")],
                          columns=3)  # four a row cut "2.00e-04" to "2.00e-" at 1024 px
    g = st.columns(2) + st.columns(2)
    train["device"] = knobs.widget(TRAIN_PARAMS["device"], container=g[0])
    init = knobs.widget(Param("init_run", str, "", TRAIN_PARAMS["init_run"].help, choices=init_choices,
                              optional=True),
                        container=g[1], label="Start from (public pre-training)",
                        format_func=lambda v: labels.get(v, "random initialisation") if v else "random initialisation")
    train["init_weights"] = knobs.widget(TRAIN_PARAMS["init_weights"], container=g[2],
                                         label="or a pretrained checkpoint (path on the server)")
    name = g[3].text_input("Run name", key=f"{PAGE}:name", placeholder=f"{role} {arch}")
    train["arch"], train["init_run"] = arch, (init or None)
    blocked |= knobs.invalid or timm_bad
    size_key = f"{PAGE}:size:" + json.dumps([arch, n_classes, c, h, defenses, train["batch_size"], train["device"]],
                                             sort_keys=True, default=str)
    if st.button("Estimate memory and time here", key=f"{PAGE}:size", icon=":material/memory:", disabled=blocked,
                 help="builds the model and measures one training step on this machine now"):
        with ui.guard(), st.spinner("measuring one training step"):
            from mivis.models import model_config
            from mivis.sizing import estimate, verdict
            n_train = len(split.public) if role == "public" else len(split.train)
            st.session_state[size_key] = verdict(estimate(model_config(arch, n_classes, c, h, arch_params, defenses),
                                                          n_train, train["batch_size"], train["device"]))
    if size_key in st.session_state:
        level, line = st.session_state[size_key]
        {"ok": st.success, "warn": st.warning, "refuse": st.error}[level](line, icon=":material/memory:")
        blocked |= level == "refuse"
    if "tldmi" in defenses and not init and not train.get("init_weights"):
        blocked = True
        st.warning("TL-DMI fine-tunes a model that was first trained on the public identities: choose it under "
                   "**Start from (public pre-training)**. No such run of this architecture yet? Train one first "
                   "with **Role: public**." if not public_runs else
                   "TL-DMI fine-tunes a public pre-trained model: choose one under **Start from (public "
                   "pre-training)**.", icon=":material/warning:")
    go = st.button("Train", key=f"{PAGE}:train", type="primary", icon=":material/play_arrow:", disabled=blocked,
                   help="fix the settings marked in red first" if blocked else "queue a training job")

box = st.container()
if go:
    label = name or f"{role} {arch}" + (f" + {', '.join(defenses)}" if defenses else "")
    ui.submit_job("train", {"role": role, "train": train, "data": data, "arch_params": arch_params,
                            "defenses": defenses, "name": label}, label=f"train {label}", page=PAGE, box=box)


def live(rec):
    events = ui.job_manager().events(rec.id)
    steps = [e for e in events if e.get("phase") == "train" and "loss" in e]
    epochs = [e for e in events if e.get("phase") == "epoch"]
    if not steps:
        return
    import plotly.graph_objects as go_
    from plotly.subplots import make_subplots
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    xs = [(e["epoch"] - 1) + e["step"] / e["steps"] for e in steps]
    fig.add_trace(go_.Scatter(x=xs, y=[e["loss"] for e in steps], name="training loss", mode="lines"))
    if epochs and "test_acc" in epochs[0]:
        fig.add_trace(go_.Scatter(x=[e["epoch"] for e in epochs], y=[e["test_acc"] for e in epochs],
                                  name="held-out accuracy", mode="lines+markers"), secondary_y=True)
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="loss", secondary_y=False)
    fig.update_yaxes(title="accuracy", range=[0, 1.02], secondary_y=True)
    ui.plot(fig, height=300)


def done(rec):
    if rec.status != "done":
        return
    try:
        run = ui.workspace().get(rec.run_id)
    except Exception:
        st.warning(f"The run {rec.run_id} made by this job was deleted.")
        return
    mm = run.metrics
    c1, c2, c3 = st.columns(3)
    c1.metric("Natural accuracy (held-out)", f"{mm.get('natural_acc', float('nan')):.1%}")
    c2.metric("Training time", f"{mm.get('train_seconds', 0):.0f} s", help=str(mm.get("device", "")))
    c3.metric("Trainable parameters", f"{mm.get('trainable_params', 0):,}")
    st.page_link("pages/runs.py", label=f"Open run {run.id}", icon=":material/open_in_new:",
                 query_params={"run": run.id})


# --- import a model trained elsewhere -------------------------------------------------------------------
st.subheader("Your own model")
with st.expander("Import a classifier trained elsewhere (safetensors, any timm architecture)",
                 icon=":material/upload_file:"):
    st.caption("It becomes a normal target (or evaluation) run: attack it, open it on Results, Layers and "
               "Trade-off, and compare it with a skip-modified retrain of the same architecture trained here. "
               "The data it was trained on is the **Data** setting above (its image size and channels follow "
               "the model's); a data folder must lie inside the workspace or a folder listed in "
               "`MIVIS_DATA_ROOTS`. Its held-out accuracy is measured at import; a model near chance is not "
               "imported until its class order is right. **Class order**: output *c* must mean the split's "
               "private identity *c*, in the order `python -m mivis data` lists them (the private list's "
               "order); a model trained with torchvision's ImageFolder has the names sorted instead: choose "
               "*sorted names*. **Preprocessing**: mivis gives it each face cut to the centred square of its "
               "shorter side, resized (bicubic) to the input size, then normalised as set below; a model trained "
               "on faces prepared otherwise measures lower here (README, Your own model).")
    up = st.file_uploader("Weights (.safetensors)", type=["safetensors"], key=f"{PAGE}:imp_file")
    ic = st.columns(4)
    imp_arch = ic[0].text_input("timm architecture", key=f"{PAGE}:imp_arch",
                                value=any_timm or ARCHITECTURES.get(arch).meta.get("timm_name", arch))
    imp_role = ic[1].selectbox("Role", ("target", "eval"), key=f"{PAGE}:imp_role")
    imp_size = ic[2].number_input("Input size (px)", min_value=16, max_value=256, value=int(h), key=f"{PAGE}:imp_size")
    imp_chans = ic[3].selectbox("Channels", (1, 3), index=0 if c == 1 else 1, key=f"{PAGE}:imp_chans")
    try:
        private_k = split.num_classes
    except NameError:  # the data did not load (its message is shown above)
        private_k = data["n_private"]
    ic = st.columns([1, 1, 1, 2])
    imp_classes = ic[3].number_input("Classes (outputs)", min_value=2, max_value=100000, value=int(private_k),
                                     key=f"{PAGE}:imp_classes", help="checked against the data's private classes")
    mean_txt = ic[0].text_input("Normalisation mean", key=f"{PAGE}:imp_mean", placeholder="timm's (ImageNet)",
                                help="comma-separated, one per channel; blank: timm's default for the architecture")
    std_txt = ic[1].text_input("Normalisation std", key=f"{PAGE}:imp_std", placeholder="timm's (ImageNet)")
    order_rule = st.radio("Class order (the model's outputs)", ("split", "sorted", "names"), horizontal=True,
                          key=f"{PAGE}:imp_order_rule",
                          format_func=lambda r: {"split": "the split's order", "sorted": "sorted names (ImageFolder)",
                                                 "names": "my own list"}[r])
    order_txt = st.text_area("Class order (the model's outputs)", key=f"{PAGE}:imp_order", height=68,
                             label_visibility="collapsed", disabled=order_rule != "names",
                             placeholder="the names in the model's output order (one a line or comma-separated)")
    err_key, flag_key = f"{PAGE}:import_error", f"{PAGE}:import_flagged"
    retry = st.session_state.pop(f"{PAGE}:import_retry", None)  # a button below: (class order, keep flagged)
    if (st.button("Import", key=f"{PAGE}:import", icon=":material/upload:", disabled=up is None) or retry) \
            and up is not None:
        from mivis.importing import ImportFlagged, import_model, read_class_order
        from mivis.params import FLOAT_LIST

        def floats(t: str, n: str):
            return Param(n, FLOAT_LIST, None, "", optional=True).coerce(t) if t.strip() else None
        st.session_state.pop(err_key, None)
        st.session_state.pop(flag_key, None)
        order = (retry[0] if retry else order_rule if order_rule != "names" else
                 read_class_order(order_txt.replace("\n", ",").strip() or None, allow_file=False))
        try:
            with st.spinner("checking the file and measuring held-out accuracy"):
                from mivis.uploads import kept_if_used
                with kept_if_used(ui.workspace(), up.getvalue()) as path:  # a refused upload is removed again
                    rec = import_model(path, imp_arch.strip(), data, role=imp_role, num_classes=int(imp_classes),
                                       img_size=int(imp_size), in_chans=int(imp_chans),
                                       mean=floats(mean_txt, "mean"), std=floats(std_txt, "std"),
                                       class_order=order, workspace=ui.workspace(),
                                       keep_flagged=bool(retry and retry[1]),
                                       name=f"{imp_role} {imp_arch.strip()} (imported {up.name})")
            st.session_state[f"{PAGE}:imported"] = rec.id
        except ImportFlagged as e:  # no run: the measurement and the suggested order, to apply with one click
            st.session_state[flag_key] = {"metrics": e.metrics, "order": order, "file": up.name}
            st.session_state.pop(f"{PAGE}:imported", None)
        except ui.user_error_types() as e:  # kept until the next attempt (a rerun must not wipe the refusal)
            st.session_state[err_key] = f"{up.name}: {ui.one_line(e)}"
            st.session_state.pop(f"{PAGE}:imported", None)
    if err_key in st.session_state:
        st.error(st.session_state[err_key], icon=":material/error:")
    flagged = st.session_state.get(flag_key)
    if flagged:
        from mivis.importing import flagged_message
        fm = flagged["metrics"]
        st.warning(f"{flagged['file']}: {flagged_message(fm, cli=False)}. Nothing was imported.",
                   icon=":material/swap_vert:")
        if fm.get("suggested_order"):
            st.markdown("Suggested order (the model's outputs 1..{}): {}".format(
                len(fm["suggested_order"]), ui.plain(", ".join(fm["suggested_order"]))))
        b = st.columns(2)
        if fm.get("suggested_order") and b[0].button("Import with the suggested order", key=f"{PAGE}:import_suggested",
                                                      icon=":material/swap_vert:"):
            st.session_state[f"{PAGE}:import_retry"] = (fm["suggested_order"], False)
            st.rerun()
        if b[1].button("Import anyway (keep it flagged)", key=f"{PAGE}:import_anyway",
                       help="store the run with the order given; its metrics say 'classes probably mis-ordered'"):
            st.session_state[f"{PAGE}:import_retry"] = (flagged["order"], True)
            st.rerun()
    imported = st.session_state.get(f"{PAGE}:imported")
    if imported:
        with ui.guard():
            from mivis.importing import order_warning
            rec = ui.workspace().get(imported)
            mm = rec.metrics
            q = st.columns(3)
            q[0].metric("Held-out accuracy", f"{mm['natural_acc']:.1%}", help=f"chance {mm['chance']:.1%}")
            q[1].metric("Training-image accuracy", f"{mm['train_acc']:.1%}")
            q[2].metric("Parameters", f"{mm['params']:,}")
            warn = order_warning(mm)
            if warn:
                st.warning(warn + f" Suggested: {ui.plain(', '.join(mm['suggested_order']))}",
                           icon=":material/swap_vert:")
            st.success(f"Imported as run `{rec.id}` ({rec.kind}).", icon=":material/check_circle:")
            ia = get_anatomy_of(rec.config["model"])
            if ia is not None:
                st.graphviz_chart(ui.stage_dot(ia), width="stretch")
            st.page_link("pages/runs.py", label=f"Open run {rec.id}", icon=":material/open_in_new:",
                         query_params={"run": rec.id})

job = ui.current_job(PAGE, kinds=("train",), box=box)
if job is not None:
    ui.job_banner(job, "below", box=banner)
    ui.job_panel(PAGE, job, live=live, done=done)
knobs.finish()
