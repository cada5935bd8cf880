"""Architecture: pick a model, set its defenses, see parameter counts live, train it as a job."""
import streamlit as st

from mivis import ui

ui.ensure_router()
from mivis.data import DATA_PARAMS, load_split
from mivis.defenses import DEFENSES
from mivis.models import ARCHITECTURES
from mivis.params import Param, ParamError
from mivis.train import ROLES, TRAIN_PARAMS

PAGE = "architecture"
st.title("Architecture")
st.caption("Choose a classifier and the architecture-level defenses it is trained with. Parameter counts "
           "update as you change settings; **Train** runs in the background job queue.")
knobs = ui.Knobs(PAGE)

ROLE = Param("role", str, "target", "target: trained on the private identities and attacked; eval: the "
             "independent judge of attacks (use another architecture); public: pre-training on the public "
             "identities (the starting point of TL-DMI)", choices=ROLES)

top = st.columns([2, 1, 1])
arch = knobs.widget(TRAIN_PARAMS["arch"], container=top[0], label="Architecture",
                    format_func=lambda n: f"{n}: {ARCHITECTURES.get(n).help}")
role = knobs.widget(ROLE, container=top[1], label="Role")
arch_params = knobs.widgets(ARCHITECTURES.get(arch).params, prefix="arch_", container=top[2])

with st.expander("Data", expanded=False, icon=":material/dataset:"):
    data = knobs.widgets(DATA_PARAMS, columns=3)
    if data["dataset"] == "orl":
        st.caption(ui.ORL_CREDIT)

blocked = False  # a setting the library refuses: shown in place, Train disabled
try:
    split = load_split(data)
    c, h, _ = split.image_shape
    n_classes = len(split.public_names) if role == "public" else split.num_classes
except Exception as e:  # DataError, ParamError: a readable message, the rest of the page still works
    ui.error(e)
    blocked = True
    c, h, n_classes = data["channels"], data["image_size"], data["n_private"]

# --- defenses, generated from the registry ----------------------------------------------------------
defenses: dict = {}
if len(DEFENSES):
    st.subheader("Defenses")
    cols = st.columns(min(3, len(DEFENSES)))
    for i, entry in enumerate(DEFENSES.entries()):
        with cols[i % len(cols)].container(border=True):
            on = knobs.widget(Param(f"use_{entry.name}", bool, False, entry.help), label=entry.name)
            if on:
                defenses[entry.name] = knobs.widgets(entry.params, prefix=f"{entry.name}_")
else:
    st.info("No defense is registered in this build; the model trains as is.", icon=":material/shield:")


@st.cache_data(show_spinner=False, max_entries=256)
def counts(arch: str, n_classes: int, c: int, h: int, arch_params_json: str, defenses_json: str) -> dict:
    import json

    import torch

    from mivis.defenses import instantiate
    from mivis.models import model_config, model_from_config
    mcfg = model_config(arch, n_classes, c, h, json.loads(arch_params_json), json.loads(defenses_json))
    objs = instantiate(mcfg["defenses"], mcfg)
    with torch.device("meta"):  # shapes only: instant even for ResNet-152
        model = model_from_config(mcfg, phase="final")
    total = sum(p.numel() for p in model.parameters())
    allowed = None
    for d in objs:
        names = d.trainable_names(model)
        if names is not None:
            allowed = names if allowed is None else allowed & names
    trained = sum(p.numel() for n, p in model.named_parameters() if allowed is None or n in allowed)
    return {"total": total, "trained": trained, "body": sum(p.numel() for p in model.body.parameters()),
            "head": sum(p.numel() for p in model.head.parameters())}


import json  # noqa: E402

try:
    cnt = counts(arch, n_classes, c, h, json.dumps(arch_params, sort_keys=True), json.dumps(defenses, sort_keys=True))
except (ParamError, ValueError) as e:
    ui.error(e)
    blocked, cnt = True, None
if cnt:
    m = st.columns(4)
    m[0].metric("Parameters |θ_T|", f"{cnt['total']:,}")
    m[1].metric("Trained on private data |θ_C|", f"{cnt['trained']:,}", help="parameters that are not frozen")
    m[2].metric("Fraction trained", f"{cnt['trained'] / max(1, cnt['total']):.1%}")
    m[3].metric("Classes", f"{n_classes}", help=f"{h}x{h} px, {c} channel{'s' if c > 1 else ''}")

# --- training ------------------------------------------------------------------------------------------
st.subheader("Train")
public_runs = [r for r in ui.workspace().list(kind="public", status="done") if r.config["model"]["arch"] == arch]
init_choices = ("",) + tuple(r.id for r in public_runs)
labels = {r.id: ui.run_label(r) for r in public_runs}
with st.container(border=True):
    train = knobs.widgets([p for p in TRAIN_PARAMS if p.name not in ("arch", "init_run", "device")], columns=4)
    g = st.columns(3)
    train["device"] = knobs.widget(TRAIN_PARAMS["device"], container=g[0])
    init = knobs.widget(Param("init_run", str, "", TRAIN_PARAMS["init_run"].help, choices=init_choices,
                              optional=True),
                        container=g[1], label="Start from (public pre-training)",
                        format_func=lambda v: labels.get(v, "random initialisation") if v else "random initialisation")
    name = g[2].text_input("Run name", key=f"{PAGE}:name", placeholder=f"{role} {arch}")
    train["arch"], train["init_run"] = arch, (init or None)
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


job = ui.current_job(PAGE, kinds=("train",), box=box)
if job is not None:
    ui.job_panel(PAGE, job, live=live, done=done)
