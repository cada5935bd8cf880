"""Attack: choose a target, a prior, an attack and its budget; estimate; launch; watch it live; cancel."""
import dataclasses
import json

import streamlit as st

from mivis import ui

ui.ensure_router()

from mivis.attacks import ATTACKS, estimate_seconds  # noqa: E402
from mivis.attacks.context import check_prior  # noqa: E402
from mivis.attacks.presets import ONE_CLICK, PRESETS, apply_preset  # noqa: E402
from mivis.evaluation import check_judge  # noqa: E402
from mivis.models import same_architecture  # noqa: E402
from mivis.params import Param, ParamError  # noqa: E402
from mivis.runs import RunError  # noqa: E402
from mivis.priors import PRIORS, PRESETS as PRIOR_PRESETS, import_prior, shipped_priors  # noqa: E402

PAGE = "attack"
ADVANCED = ("device", "batch_size", "amp", "compile", "channels_last")
BASIC = ("identities", "restarts", "iterations", "seed")  # what a class needs; the paper's knobs sit in a fold
st.title("Attack")
st.caption("Invert a trained target: search an image prior learned on **public** faces for images the target "
           "labels as each **private** identity. An independent evaluation model judges whether the identity leaked.")
knobs = ui.Knobs(PAGE)
ws = ui.workspace()
box = st.container()
job_box = st.container()  # the running or finished job shows here, above the settings

JOB_KINDS = ("attack", "prior", "train", "classroom", "ceiling")


def classroom_button(where) -> None:
    from mivis.classroom import shipped
    try:
        ready = shipped() is not None
    except Exception:  # a damaged shipment: the set-up job says why and trains instead
        ready = False
    where.markdown("**Classroom quick start**: "
                   + ("register the shipped ORL 32 px target (ResNet-18) and its independent judge (VGG-11), "
                      "checked against their recorded sha256, and the shipped GMI prior: no training. "
                      if ready else
                      "train the ORL 32 px target (ResNet-18, 30 epochs) and its independent judge (VGG-11), and "
                      "import the shipped GMI prior. ")
                   + "Then launch a classroom attack below; the run-time estimate times it on this machine now.")
    running = next((j for j in ui.job_manager().active() if j.kind == "classroom"), None)
    if where.button("Set up the classroom default", key=f"{PAGE}:classroom", icon=":material/school:",
                    disabled=running is not None,
                    help="already being set up: see its progress below" if running else None):
        ui.submit_job("classroom", {}, label="classroom set-up", page=PAGE, box=box)


targets = ws.list(kind="target", status="done")
if not targets:
    st.info("There is no trained target in the workspace yet. Use the quick start below, or train one on the "
            "**Architecture** page (role: target) plus an evaluation model of another architecture (role: eval).",
            icon=":material/info:")
    classroom_button(st)
    early = ui.current_job(PAGE, kinds=JOB_KINDS, box=box)
    if early is None:  # a set-up started by another browser session is shown here too (it is shared)
        early = next((j for j in ui.job_manager().active() if j.kind == "classroom"), None)
    if early is not None:
        with job_box:
            ui.job_panel(PAGE, early, live=lambda r: st.caption(ui.progress_text(r.progress)
                                                                + f" · {r.progress.get('part', '')}"))
    knobs.finish(keep=("job",))
    st.stop()

by_id = {r.id: r for r in targets}


def describe_target(r) -> str:
    m = r.config["model"]
    d = ", ".join(m.get("defenses") or {}) or "no defense"
    acc = r.metrics.get("natural_acc")
    return f"{r.name or m['arch']} · {m['arch']} {m['img_size']}px · {d}" + (f" · acc {acc:.0%}" if acc is not None else "")


tp = Param("target", str, targets[0].id, "the trained classifier to attack", choices=tuple(by_id))
cols = st.columns([3, 2])
target_id = knobs.widget(tp, container=cols[0], label="Target run", sticky=True, format_func=lambda i: describe_target(by_id[i]))
target = by_id[target_id]
attack = knobs.widget(Param("attack", str, ONE_CLICK, "the attack", choices=tuple(ATTACKS.names())), container=cols[1],
                      label="Attack", format_func=lambda n: f"{n}: {ATTACKS.get(n).help.split(':')[0]}")
entry = ATTACKS.get(attack)
st.caption(entry.help)
need = entry.meta["prior"]

@st.cache_data(show_spinner=False)
def shipped_info() -> list[tuple[str, dict, str]]:
    """(name, net config, generator sha256) of each prior shipped in assets/priors/."""
    import hashlib

    from mivis.priors.store import ASSETS
    out = []
    for n in shipped_priors():
        net = json.loads((ASSETS / n / "prior.json").read_text())["net"]
        out.append((n, net, hashlib.sha256((ASSETS / n / "generator.safetensors").read_bytes()).hexdigest()))
    return out


# the classroom set-up registers the target, then the judge and the prior: between the steps the page must not
# flash "no evaluation model / prior fits" warnings at the teacher who just clicked it
setting_up = next((j for j in ui.job_manager().active() if j.kind == "classroom"), None)
SETTING_UP = "The classroom set-up is registering it; it appears here when the set-up finishes."

# --- prior ---------------------------------------------------------------------------------------------
prior_id = None
blocked = False
if need != "none":
    fits = []
    for r in ws.list(kind="prior", status="done"):
        try:
            check_prior(ws, r.id, target)
        except ParamError:
            continue
        except RunError as e:  # a damaged prior: named, left out; the page goes on
            ui.damaged(e, box)
            continue
        if bool(r.config["net"]["conditional"]) == (need == "conditional"):
            fits.append(r)
    imported = {r.config.get("sha256") for r in fits}
    tm_ = target.config["model"]
    shipped = [f"shipped:{n}" for n, net, sha in shipped_info()
               if need != "conditional" and not net["conditional"] and sha not in imported
               and (net["img_size"], net["channels"]) == (tm_["img_size"], tm_["in_chans"])]
    labels = {r.id: f"{r.name} · {r.id[-6:]}" for r in fits} | {s: f"shipped prior {s[8:]} (imported on launch)"
                                                                for s in shipped}
    options = tuple(labels)
    pc = st.columns([3, 2])
    if options:
        prior_choice = knobs.widget(Param("prior", str, options[0], "the image prior the attack searches",
                                          choices=options), container=pc[0], label="Prior",
                                    format_func=lambda v: labels[v])
        if prior_choice.startswith("shipped:"):
            prior_id = prior_choice
        else:
            prior_id = prior_choice
            samples = ws.get(prior_choice).file("samples.png")
            if samples.exists():
                pc[1].image(ui.png_crisp(samples, 256), caption="prior samples", width=220)
    elif setting_up is not None:
        blocked = True
        pc[0].info(SETTING_UP, icon=":material/hourglass_top:")
    else:
        blocked = True
        kind = "conditional (PLG-MI) prior trained with this target" if need == "conditional" else "GAN prior"
        pc[0].warning(f"No {kind} fits this target ({target.config['model']['img_size']} px). Train one below.",
                      icon=":material/warning:")
    with st.expander("Train a new prior", expanded=not options, icon=":material/model_training:"):
        ptypes = ("plgmi",) if need == "conditional" else ("gmi", "kedmi", "pca")
        ptype = knobs.widget(Param("prior_type", str, ptypes[0], "prior type", choices=ptypes), label="Prior type")
        ppreset = knobs.widget(Param("prior_preset", str, "cpu", "iterations and batch: smoke = seconds (blobs, "
                                     "tests only); cpu = sized for a 2-core CPU (the progress bar shows the time left); default = the GPU "
                                     "recipe",
                                     choices=tuple(PRIOR_PRESETS)), label="Prior preset")
        st.caption(f"{PRIORS.get(ptype).help}. Trained on the public identities of the target's data split.")
        if st.button("Train prior", key=f"{PAGE}:train_prior", icon=":material/play_arrow:"):
            is_t = PRIORS.get(ptype).meta.get("needs_target")
            ui.submit_job("prior", {"type": ptype, "params": {}, "preset": ppreset,
                                    "data": None if is_t else target.config["data"],
                                    "target_run": target.id if is_t else None, "name": f"{ptype} prior ({ppreset})"},
                          label=f"train {ptype} prior", page=PAGE, box=box)

# --- evaluation model ----------------------------------------------------------------------------------
judges, refused = [], []
for r in ws.list(kind="eval", status="done"):
    try:
        check_judge(ws, r.id, target)
        judges.append(r)
    except ParamError as e:
        refused.append(str(e))
jl = {r.id: f"{r.name or r.config['model']['arch']} · {r.config['model']['arch']} · acc "
            f"{r.metrics.get('natural_acc', 0):.0%}" for r in judges}
ec = st.columns([3, 2])
if judges:
    eval_id = knobs.widget(Param("eval", str, judges[0].id, "the evaluation model (never the target)",
                                 choices=tuple(jl)), container=ec[0], label="Evaluation model",
                           format_func=lambda i: jl[i])
elif setting_up is not None:
    eval_id, blocked = None, True
    ec[0].info(SETTING_UP, icon=":material/hourglass_top:")
else:
    eval_id, blocked = None, True
    tarch = target.config["model"]["arch"]
    earch = "vgg11" if not same_architecture(tarch, "vgg11") else "resnet18"  # timm:vgg11_bn is vgg11 too
    why = (" The evaluation models in the workspace do not fit: " + "; ".join(dict.fromkeys(refused))[:600] + "."
           if refused else "")
    ec[0].warning(f"No evaluation model can judge this target: it must be another architecture trained on the same "
                  f"split, image size and channels.{why} Train a {earch} evaluation model (a job):",
                  icon=":material/warning:")
    pending = [j for j in ui.job_manager().active() if j.kind == "classroom" or
               (j.kind == "train" and j.params.get("role") == "eval")]
    if pending:
        ec[1].info(f"An evaluation model is being trained ({ui.plain(pending[0].label or pending[0].kind)}, "
                   f"{pending[0].status}); it appears here when it finishes.", icon=":material/hourglass_top:")
    elif ec[1].button(f"Train {earch} evaluation model", key=f"{PAGE}:train_eval", icon=":material/play_arrow:"):
        tcfg = target.config["train"]
        ui.submit_job("train", {"role": "eval", "train": {"arch": earch, "epochs": tcfg.get("epochs", 30), "lr": 1e-3,
                                                          "batch_size": tcfg.get("batch_size", 32),
                                                          "seed": tcfg.get("seed", 0)},
                                "data": target.config["data"], "name": f"eval {earch}"},
                      label=f"train eval {earch}", page=PAGE, box=box)

# --- the prior's ceiling (a diagnostic of the prior, not an attack) --------------------------------------
if need != "none":
    with st.expander("Prior ceiling: the most this prior can show each judge (diagnostic, not an attack)",
                     icon=":material/straighten:"):
        ui.ceiling_panel(ws, prior_id, eval_id, knobs, PAGE, box=box)

# --- budget and parameters -----------------------------------------------------------------------------
st.subheader("Budget")
def use_preset() -> None:
    """A callback, so the preset is applied before the next run's script even when the click lands during a slow
    rerun: every parameter a preset sets gets the chosen preset's value, or its declared default where the chosen
    one leaves it alone (paper after classroom: back to the attack's own iterations)."""
    chosen = st.session_state.get(knobs.key("preset"))
    vals = apply_preset(chosen if chosen in PRESETS else None, attack, {})
    touched = {k for name in PRESETS for k in apply_preset(name, attack, {})}
    for p in entry.params:
        if p.name in touched:
            k = knobs.key(f"{attack}.{p.name}")
            st.session_state[k] = vals.get(p.name, p.default)
            st.session_state.pop("_keep:" + k, None)


preset = knobs.widget(Param("preset", str, "classroom", "fills the attack's defaults: classroom = 5 restarts x 100 "
                            "iterations, sized for a laptop CPU (Estimate run time times it here, now); paper = "
                            "the papers' iterations; gpu = paper + torch.compile",
                            choices=tuple(PRESETS)), label="Preset", on_change=use_preset)
defaults = apply_preset(preset, attack, {})
params_decl = [dataclasses.replace(p, default=defaults.get(p.name, p.default),  # identities: bounded by the
                                   **({"min": 0, "max": target.config["model"]["num_classes"] - 1}  # target's
                                      if p.name == "identities" else {}))  # classes before a range expands
               for p in entry.params]
main = [p for p in params_decl if p.name in BASIC]
paper = [p for p in params_decl if p.name not in BASIC and p.name not in ADVANCED]
adv = [p for p in params_decl if p.name in ADVANCED]
n_classes = target.config["model"]["num_classes"]
values = knobs.widgets(main, prefix=f"{attack}.", columns=4)
with st.expander("Advanced: the paper's settings (the preset fills them)", icon=":material/tune:"):
    values.update(knobs.widgets(paper, prefix=f"{attack}.", columns=3))
with st.expander("Advanced: device and speed", icon=":material/speed:"):
    values.update(knobs.widgets(adv, prefix=f"{attack}.", columns=4))
ids = values.get("identities") or list(range(n_classes))
restarts = values.get("restarts", 1)
what = (f"{len(ids)} identit{'y' if len(ids) == 1 else 'ies'} x {restarts} restart{'' if restarts == 1 else 's'} "
        f"= {len(ids) * restarts} reconstructions")
if entry.obj.gradient_free:  # the posterior mean draws and scores samples; nothing is optimised
    pool = values.get("iterations", 0) * values.get("samples_per_step", 0)
    st.caption(f"{what}; each restart scores a pool of {pool:,} prior samples with the target, and each "
               f"reconstruction is the average of its identity's {values.get('top_k', '?')} highest-scoring "
               f"samples (no gradient). Chance level: {1 / n_classes:.0%} top-1.")
else:
    st.caption(f"{what}, {values.get('iterations', '?')} iterations each, all optimised in one batch. "
               f"Chance level: {1 / n_classes:.0%} top-1.")


def estimate(attack: str, target: str, prior: str | None, params_json: str) -> tuple[float, str]:
    """Times a few steps now, with the thread count the job would get now (never a cached figure: the
    machine's load changes)."""
    from mivis.threads import fit_threads
    load = fit_threads()
    return estimate_seconds(attack, target, prior, params=json.loads(params_json), workspace=ws), load.describe()


def resolve_prior() -> str | None:
    if prior_id and prior_id.startswith("shipped:"):
        return import_prior(prior_id[8:], ws).id
    return prior_id


blocked |= knobs.invalid
bar = st.container(horizontal=True)  # buttons as wide as their words (fixed columns cut them off at 1024 px)
est = bar.button("Estimate run time", key=f"{PAGE}:estimate", icon=":material/timer:", disabled=blocked)
go = bar.button("Launch attack", key=f"{PAGE}:launch", type="primary", icon=":material/play_arrow:",
                disabled=blocked, help="fix the settings marked above first" if blocked else "queue the attack")
note = st.container()  # the estimate, an error, or the job's banner: under the buttons
if est:
    try:
        with st.spinner("timing a few steps on the real batch"):
            s, threads = estimate(attack, target.id, resolve_prior(), json.dumps(values, sort_keys=True))
        busy = ui.job_manager().active()
        note.info(f"Estimated optimisation time: **{s:.0f} s**, from steps timed just now on this machine "
                  f"({threads}), plus loading and evaluation."
                  + (f" {len(busy)} job(s) are ahead in the queue." if busy else ""), icon=":material/timer:")
    except Exception as e:
        ui.error(e, box=note)
if go:
    try:
        pid = resolve_prior()
    except Exception as e:
        ui.error(e, box=box)
    else:
        ui.submit_job("attack", {"attack": attack, "target_run": target.id, "prior_run": pid, "eval_run": eval_id,
                                 "params": values, "name": f"{attack} on {target.name or target.id}"},
                      label=f"{attack} attack", page=PAGE, box=box)


# --- the job: live view and result -----------------------------------------------------------------------
def judging(rec) -> bool:
    """Faces first: once the attack's last iteration has ended, its final reconstructions (the run's grid, real
    face first in each row) while the judges work, and each judge's top-1 as it finishes."""
    p = rec.progress or {}
    rid = p.get("run")
    if rec.status != "running" or p.get("phase") != "judging" or not isinstance(rid, str):
        return False
    try:
        png = ws.run_dir(rid) / "reconstructions.png"
    except Exception:
        return False
    said = [f"{name} top-1 **{100 * p[f'top1_{k}']:.0f}%**" for k, name in (("E", "E"), ("dlib", "dlib"))
            if isinstance(p.get(f"top1_{k}"), (int, float))]
    now = {"E": "the evaluation model E is judging", "dlib": "dlib is judging"}.get(p.get("judging") or "")
    st.markdown("**Final reconstructions** (the attack has ended) · " + " · ".join(said + ([now] if now else [])))
    if png.exists():
        tgt = ws.get(rec.params.get("target_run")) if ws.exists(rec.params.get("target_run", "")) else None
        size = tgt.config["model"]["img_size"] if tgt else 32
        try:
            ui.png_row_pages(png, size * (2 if size <= 32 else 1) + 2, key=f"{PAGE}:judging_rows",
                             caption="Each row: a real private training face, then that identity's reconstructions; "
                                     "the verdicts come as each judge finishes. " + ui.ORL_CREDIT)
        except OSError:  # being written: the next poll shows it
            pass
    return True


def live(rec):
    if rec.kind == "attack":
        if judging(rec):
            return
        events = [e for e in ui.job_manager().events(rec.id) if e.get("phase") == "attack"]
        left, right = st.columns([3, 2])
        prev = rec.dir / "preview.png"
        with left:
            if prev.exists():
                try:
                    meta = json.loads((rec.dir / "preview.json").read_text())
                    cap = (f"each identity's average of the samples it keeps so far, after sampling round "
                           f"(iteration) {meta['iteration']}/{meta['iterations']}." if meta.get("sampling") else
                           f"current reconstructions, iteration {meta['iteration']}/{meta['iterations']}.")
                    n_ids = len(meta.get("identities") or []) or 10
                except (OSError, ValueError, KeyError):
                    cap, n_ids = "current reconstructions.", 10
                try:  # every attacked identity, ten a row, four rows a page (square cells: row height = cell width)
                    from PIL import Image
                    with Image.open(prev) as im:
                        cell = (im.size[0] - 2) // min(10, n_ids)
                    ui.png_row_pages(prev, cell, per_page=4, key=f"{PAGE}:live_rows", caption=cap + " ")
                except OSError:  # the preview is being replaced: the next poll shows it
                    st.caption(cap)
        with right:
            if events:
                ui.attack_curves(events)
    elif rec.kind in ("train", "prior", "classroom"):
        ev = [e for e in ui.job_manager().events(rec.id) if "loss" in e or "g_loss" in e]
        if ev:
            st.caption(ui.progress_text(ev[-1]))


def done(rec):
    if rec.status != "done" or not rec.run_id:
        return
    try:
        run = ws.get(rec.run_id)
    except Exception:
        st.warning(f"The run {rec.run_id} made by this job was deleted.")
        return
    if run.kind == "ceiling":
        st.success(f"The prior's ceiling is measured ({run.id}): see Prior ceiling above.", icon=":material/check:")
        return
    if run.kind != "attack":
        st.success(f"{run.name or run.kind} ({run.id}) is ready and selectable above.", icon=":material/check:")
        return
    m = run.metrics
    ui.metric_row([  # the independent judge first, as on Home and Results
        *([{"label": "Top-1 under dlib", "value": m["extra_judges"]["dlib"].get("attack_acc_top1"),
            "help": "the independent face judge, which never trained on the private images; 95% identity "
                    "bootstrap"}]
          if isinstance((m.get("extra_judges") or {}).get("dlib"), dict) else []),
        {"label": "Attack accuracy top-1 (E)", "value": m.get("attack_acc_top1"),
         "help": "the evaluation model E, trained on the same private images as the target; 95% identity "
                 "bootstrap"},
        {"label": "Attack accuracy top-5", "value": m.get("attack_acc_top5")},
        {"label": "Target likelihood p_T", "value": m.get("target_likelihood"), "pct": False},
        {"label": "Time: attack + judging", "value": f"{m.get('attack_seconds', 0):.0f} s + "
                                                      f"{m.get('evaluate_seconds', 0):.0f} s", "pct": False}])
    ui.ceiling_note(ws, run)  # beside the accuracies: the most this attack's prior can show each judge
    png = run.file("reconstructions.png")
    if png.exists():
        tgt = ws.get(run.config["target_run"]) if ws.exists(run.config.get("target_run", "")) else None
        size = tgt.config["model"]["img_size"] if tgt else 32
        ui.png_row_pages(png, size * (2 if size <= 32 else 1) + 2, key=f"{PAGE}:rows:{run.id}",
                         caption="Each row: a real private training face, then the reconstructions of that identity "
                                 "(verdicts, framed right/wrong, in Results). " + ui.ORL_CREDIT)
    st.page_link("pages/results.py", label="Open in Results (verdicts, histograms, attributions)",
                 icon=":material/insights:", query_params={"run": run.id})


job = ui.current_job(PAGE, kinds=JOB_KINDS, box=box)
if job is not None:
    ui.job_banner(job, "at the top of this page", box=note if not est else st)
    with job_box:
        ui.job_panel(PAGE, job, live=live, done=done)
        st.divider()
knobs.finish(keep=("job",))
