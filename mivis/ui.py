"""The one library module that imports streamlit: widgets generated from Param declarations,
URL-backed knobs, the job panel, and render helpers shared by the pages.

Pages stay thin: they declare knobs, call the library or submit a job, and render with these.
Nothing here computes results; torch is imported only by the helpers that draw tensors.
"""
from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import streamlit as st

from .jobs import JobError, JobManager, JobRecord
from .params import FLOAT_LIST, INT_LIST, Param, ParamError
from .runs import RunError, RunRecord, Workspace

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
POLL_SECONDS = 1.5          # job polling interval while a job is active (1-2 s: see docs)
QUEUE_IDLE_SECONDS = 10.0   # the sidebar's shared queue, while nothing runs
ORL_CREDIT = "ORL faces: AT&T Laboratories Cambridge"
JOB_KEY_URL = "job"


def ensure_router() -> None:
    """Call first in every page. On Streamlit 1.67 the very first run of a fresh server opened on a
    deep link (e.g. /attack?job=...) executes the page through the legacy pages/ folder handling,
    without app.py (no page config, wrong sidebar). Switch to app.py's st.navigation and rerun."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - internal API moved
        return
    import sys
    if "streamlit.testing.v1.app_test" in sys.modules:  # AppTest resets the flag every run and a
        return                                          # rerun would drop the run's clicks

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


# --- shared resources ---------------------------------------------------------------------------
_MANAGERS: list[JobManager] = []  # every manager this process built (tests shut them down)


@st.cache_resource(show_spinner=False)
def _manager(path: str) -> JobManager:
    m = JobManager(Workspace(path))
    _MANAGERS.append(m)
    return m


def shutdown_managers() -> None:
    """Stop every job manager's workers and forget the cached one (tests; server shutdown)."""
    while _MANAGERS:
        _MANAGERS.pop().shutdown(wait=10)
    _manager.clear()


def workspace() -> Workspace:
    """The workspace; a damaged, vanished or unusable registry is one message and the page stops
    (never an exception box, never a fresh empty registry over existing runs)."""
    try:
        return Workspace()
    except RunError as e:
        damaged(e)
        st.stop()


def job_manager() -> JobManager:
    """The server's one job manager (per workspace), shared by every session."""
    return _manager(str(workspace().path))


def session_id() -> str:
    """An id for this browser session (a page reload starts a new one)."""
    if "_mivis_sid" not in st.session_state:
        sid = None
        try:
            from streamlit.runtime.scriptrunner import get_script_run_ctx
            ctx = get_script_run_ctx()
            sid = ctx.session_id if ctx else None
        except Exception:  # pragma: no cover - internal API moved
            sid = None
        if not sid:
            import secrets
            sid = "s-" + secrets.token_hex(8)
        st.session_state["_mivis_sid"] = sid
    return st.session_state["_mivis_sid"]


def _session_alive(sid: str | None) -> bool:
    if not sid:
        return False
    try:
        from streamlit.runtime import Runtime
        return Runtime.exists() and Runtime.instance().is_active_session(sid)
    except Exception:  # pragma: no cover
        return False


# --- URL-backed knobs generated from Param declarations -----------------------------------------------
def to_url(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(to_url(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def read_url_value(p: Param, raw: str) -> tuple[Any, str | None]:
    """Validate and clamp a URL string for `p`: (value to use, message or None)."""
    try:
        return p.coerce(raw), None
    except ParamError as e:
        if p.type in (int, float) and p.choices is None:
            try:
                num = float(raw)
                if math.isfinite(num):
                    lo = -math.inf if p.min is None else p.min
                    hi = math.inf if p.max is None else p.max
                    clamped = min(max(num, lo), hi)
                    if p.type is int:
                        clamped = int(round(clamped))
                    clamped = p.coerce(clamped)
                    return clamped, (f"URL parameter {p.name}={raw!r} is out of range "
                                     f"({p.allowed()}); using {to_url(clamped)}.")
            except (ValueError, ParamError):
                pass
        default = p.default
        return default, f"URL parameter {p.name}={raw!r} ignored: {e}. Using the default {to_url(default)!r}."


class Knobs:
    """Widgets for one page whose values live in the URL (shareable, survive reloads).

    The first time a widget appears in a session its value comes from the URL (validated and
    clamped; problems become messages at the top of the page), else from this session's last
    value, else the declared default. Values that differ from the default are written back to
    the URL.
    """

    def __init__(self, page: str):
        self.page = page
        self.box = st.container()
        self.names: set[str] = set()
        self.invalid = False  # some widget holds a value its declaration refuses (shown under it)

    def key(self, name: str) -> str:
        return f"{self.page}:{name}"

    def warn(self, msg: str) -> None:
        self.box.warning(msg, icon=":material/link_off:")

    def initial(self, p: Param, url_name: str) -> Any:
        k = self.key(url_name)
        if url_name in st.query_params:
            raw = st.query_params[url_name]
            value, msg = read_url_value(p, raw)
            if msg:
                self.warn(msg)
            return value
        keep = st.session_state.get("_keep:" + k, _MISSING)
        return p.default if keep is _MISSING else keep

    def widget(self, p: Param, *, name: str | None = None, label: str | None = None, container=None,
               help: str | None = None, disabled: bool = False, format_func: Callable | None = None,
               options: Iterable | None = None, slider: bool | None = None, sticky: bool = False) -> Any:
        """Render the widget for `p` (type, range and help from the declaration) and return its value.
        sticky: keep the value in the URL even when it equals the default (a run id must not drift)."""
        url_name = name or p.name
        k = self.key(url_name)
        self.names.add(url_name)
        if options is not None:
            options = list(options)
            p = Param(p.name, p.type, p.default if p.default in options or not options else options[0], p.help,
                      p.min, p.max, tuple(options), p.optional, p.step)
        if k not in st.session_state:
            st.session_state[k] = _to_widget(p, self.initial(p, url_name))
        elif p.choices is not None and st.session_state[k] not in p.choices:
            st.session_state[k] = p.default if p.default in p.choices else p.choices[0]
        raw = param_input(p, k, label=label, container=container, help=help, disabled=disabled,
                          format_func=format_func, slider=slider)
        value = _from_widget(p, raw, container)
        self.invalid |= value is _INVALID
        st.session_state["_keep:" + k] = st.session_state[k]
        if value is not _INVALID and (sticky or value != p.default) and value is not None:
            st.query_params[url_name] = to_url(value)
        elif url_name in st.query_params and value is not _INVALID:
            del st.query_params[url_name]
        return p.default if value is _INVALID else value

    def finish(self, keep: Iterable[str] = (JOB_KEY_URL,)) -> None:
        """Warn about and drop URL parameters this page did not use (e.g. a stage the chosen
        architecture does not have)."""
        for name in list(st.query_params.keys()):
            if name not in self.names and name not in set(keep):
                self.warn(f"URL parameter {name}={st.query_params[name]!r} does not apply here; ignored.")
                del st.query_params[name]

    def widgets(self, params: Iterable[Param], *, prefix: str = "", container=None,
                exclude: Iterable[str] = (), columns: int = 1) -> dict[str, Any]:
        """One widget per param; returns {name: value}."""
        out = {}
        params = [p for p in params if p.name not in set(exclude)]
        cols = (container or st).columns(columns) if columns > 1 else None
        for i, p in enumerate(params):
            c = cols[i % columns] if cols else container
            out[p.name] = self.widget(p, name=prefix + p.name, container=c)
        return out


_MISSING = object()
_INVALID = object()


# plain words first, the symbol (the parameter's name) after
PARAM_WORDS = {
    "id_weight": "Identity-loss weight (λ, id_weight)", "clip": "Latent clip: z kept in ±clip (clip)",
    "loss": "Identity loss (loss)", "fi_samples": "Private images for classification Fisher info (fi_samples)",
    "mi_samples": "Reconstructions for inversion Fisher info (mi_samples)",
    "fi_batch_size": "Fisher batch size (1 = per-sample)", "lr": "Learning rate (lr)",
}
CHOICE_WORDS = {"ce": "cross-entropy (ce)", "one_minus_p": "1 − target's confidence (one_minus_p)",
                "logit": "raw logit (logit)", "max_margin": "max margin (max_margin)",
                "poincare": "Poincaré distance (poincare)"}


def _label(p: Param) -> str:
    return PARAM_WORDS.get(p.name, p.name.replace("_", " ").capitalize())


DEFENSE_WORDS = {"skips": "Remove or scale skip connections", "tts": "Two-stage training (skips removed late)",
                 "tldmi": "Freeze the first layers (transfer learning)", "negls": "Negative label smoothing",
                 "bido": "Bilateral dependency regulariser", "mid": "Information-bottleneck head",
                 "calor": "Low-rank head with confidence adaptation"}


def defense_words(name: str, paper: str | None = None) -> str:
    """'Two-stage training (skips removed late): TTS (Koh et al., ECCV 2024)': words first, citation after."""
    words = DEFENSE_WORDS.get(name, name)
    return f"{words}: {paper}" if paper else words


def choice_words(v: Any) -> str:
    return CHOICE_WORDS.get(v, str(v)) if isinstance(v, str) else str(v)


def _to_widget(p: Param, value: Any) -> Any:
    if p.type in (FLOAT_LIST, INT_LIST):
        return to_url(value or [])
    if p.type is str and p.choices is None:
        return "" if value is None else str(value)
    if p.type is float:
        return None if value is None else float(value)
    if p.type is int and p.choices is None:
        return None if value is None else int(value)
    return value


def _from_widget(p: Param, raw: Any, container=None) -> Any:
    try:
        if p.type in (FLOAT_LIST, INT_LIST) or (p.type is str and p.choices is None):
            return p.coerce(raw)
        return p.coerce(raw) if raw is not None else p.coerce(None)
    except ParamError as e:
        (container or st).error(str(e))
        return _INVALID


def _use_slider(p: Param) -> bool:
    if p.min is None or p.max is None:
        return False
    if p.type is int:
        return p.step is not None or (p.max - p.min) <= 64
    return p.step is not None


def param_input(p: Param, key: str, *, label: str | None = None, container=None, help: str | None = None,
                disabled: bool = False, format_func: Callable | None = None, slider: bool | None = None) -> Any:
    """The Streamlit widget for one Param (its value comes from st.session_state[key])."""
    c = container or st
    label = label or _label(p)
    help = help or (p.help + (f" ({p.allowed()})" if p.choices is None and p.type is not bool else ""))
    if p.type is bool:
        return c.toggle(label, key=key, help=help, disabled=disabled)
    if p.choices is not None:
        return c.selectbox(label, list(p.choices), key=key, help=help, disabled=disabled,
                           format_func=format_func or choice_words)
    if p.type in (FLOAT_LIST, INT_LIST) or p.type is str:
        return c.text_input(label, key=key, help=help, disabled=disabled,
                            placeholder="comma-separated" if p.type in (FLOAT_LIST, INT_LIST) else "")
    use_slider = _use_slider(p) if slider is None else slider
    if p.type is int:
        lo = None if p.min is None else int(p.min)
        hi = None if p.max is None else int(p.max)
        step = int(p.step or 1)
        if use_slider:
            return c.slider(label, lo, hi, step=step, key=key, help=help, disabled=disabled)
        return c.number_input(label, lo, hi, step=step, key=key, help=help, disabled=disabled)
    lo = None if p.min is None else float(p.min)
    hi = None if p.max is None else float(p.max)
    if use_slider:  # as many decimals as the step has (MID's beta 0.003 read "0.00" with the default)
        decimals = max(0, -math.floor(math.log10(float(p.step)))) if p.step else 2
        return c.slider(label, lo, hi, step=float(p.step), key=key, help=help, disabled=disabled,
                        format=f"%.{decimals}f")
    small = p.default is not None and 0 < abs(p.default) < 0.01
    return c.number_input(label, lo, hi, step=float(p.step) if p.step else None, key=key, help=help,
                          disabled=disabled, format="%.2e" if small else None)


def url_choice(name: str, options: list[str], *, what: str, box=None) -> str | None:
    """Read a choice (e.g. a run id) from the URL; a value not among `options` gives a message."""
    raw = st.query_params.get(name)
    if raw is None:
        return None
    if raw in options:
        return raw
    (box or st).warning(f"The {what} {raw!r} in the URL does not exist (deleted?). Pick another one.",
                        icon=":material/link_off:")
    del st.query_params[name]
    return None


# --- jobs ---------------------------------------------------------------------------------------------
JOB_KEY = "job"


def submit_job(kind: str, params: dict, *, label: str, page: str, box=None) -> JobRecord | None:
    """Queue a job for this session; problems become a message in the page."""
    try:
        rec = job_manager().submit(kind, params, session=session_id(), label=label)
    except (ParamError, JobError) as e:
        (box or st).error(str(e), icon=":material/error:")
        return None
    except Exception as e:  # a data or run problem found while validating
        (box or st).error(_one_line(e), icon=":material/error:")
        return None
    st.session_state[f"{JOB_KEY}:{page}"] = rec.id
    st.query_params[JOB_KEY] = rec.id
    return rec


def current_job(page: str, *, kinds: Iterable[str] | None = None, box=None) -> JobRecord | None:
    """The job this page shows: ?job= in the URL (a reload reattaches), else this session's last.
    A registry damaged or deleted under the running app is one message and the page stops."""
    try:
        return _current_job(page, kinds=kinds, box=box)
    except RunError as e:
        damaged(e, box)
        st.stop()


def _current_job(page: str, *, kinds: Iterable[str] | None = None, box=None) -> JobRecord | None:
    m = job_manager()
    sk = f"{JOB_KEY}:{page}"
    job_id = st.query_params.get(JOB_KEY)
    if job_id is not None:
        if not m.exists(job_id):
            (box or st).warning(f"The job {job_id!r} in the URL does not exist in this workspace.",
                                icon=":material/link_off:")
            del st.query_params[JOB_KEY]
            job_id = None
        else:
            rec = m.get(job_id)
            if kinds is not None and rec.kind not in set(kinds):
                return None
            if rec.active and rec.session != session_id() and not _session_alive(rec.session):
                m.claim(job_id, session_id())  # the page was reloaded: this session takes it over
            st.session_state[sk] = job_id
    job_id = job_id or st.session_state.get(sk)
    if job_id is None or not m.exists(job_id):
        return None
    rec = m.get(job_id)
    if kinds is not None and rec.kind not in set(kinds):
        return None
    st.query_params[JOB_KEY] = job_id
    return rec


def forget_job(page: str) -> None:
    st.session_state.pop(f"{JOB_KEY}:{page}", None)
    if JOB_KEY in st.query_params:
        del st.query_params[JOB_KEY]


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def job_status(rec: JobRecord) -> None:
    """Status line, queue position, progress bar and error for one job (no polling here)."""
    label = plain(rec.label or rec.kind)  # labels carry run names: user text, shown as text
    if rec.status == "queued":
        ahead = (rec.position or 1) - 1
        st.info(f"**{label}** is queued: position {rec.position} in the queue "
                f"({ahead} waiting ahead, {rec.running} running). It starts automatically.",
                icon=":material/hourglass_top:")
    elif rec.status == "running":
        frac = rec.fraction
        left = rec.remaining
        text = (f"{label}: {progress_text(rec.progress)} · {_fmt_seconds(rec.elapsed)} elapsed"
                + (f" · about {_fmt_seconds(left)} left in this step" if left is not None else ""))
        st.progress(frac if frac is not None else 0.0, text=text)
    elif rec.status == "done":
        st.success(f"**{label}** finished in {_fmt_seconds(rec.elapsed)}.", icon=":material/check_circle:")
    elif rec.status == "cancelled":
        why = (rec.error or "").strip()
        why = why[len("cancelled"):].strip() if why.lower().startswith("cancelled") else why  # not "cancelled (cancelled by user)"
        st.warning(f"**{label}** was cancelled{' ' + why if why else ''}.", icon=":material/cancel:")
    elif rec.status == "interrupted":
        st.warning(f"**{label}** was interrupted: {rec.error}. Its partial run is marked interrupted; "
                   "start it again.", icon=":material/power_off:")
    else:
        st.error(f"**{label}** failed: {rec.error}", icon=":material/error:")


def progress_text(ev: dict) -> str:
    if not ev:
        return "starting"
    phase = str(ev.get("phase", ""))
    counted = any(k in ev and f"{k}s" in ev for k in ("epoch", "iteration", "step"))
    parts = [] if counted and phase in ("epoch", "iteration", "step", "train") else [phase]  # not "epoch · epoch 1/30"
    if ev.get("parts") and ev.get("part_index"):
        parts.insert(0, f"step {ev['part_index']} of {ev['parts']}: {ev.get('part_label') or ev.get('part', '')}")
    if "epoch" in ev and "epochs" in ev:
        parts.append(f"epoch {ev['epoch']}/{ev['epochs']}")
    for a, b in (("iteration", "iterations"), ("step", "steps")):
        if a in ev and b in ev and "epoch" not in ev:
            parts.append(f"{a} {ev[a]}/{ev[b]}")
    for k, words in (("loss", "loss"), ("likelihood", "target's confidence"), ("test_acc", "test accuracy")):
        if isinstance(ev.get(k), (int, float)):
            parts.append(f"{words} {ev[k]:.0%}" if k == "test_acc" else f"{words} {ev[k]:.3g}")
    return " · ".join(p for p in parts if p)


def job_panel(page: str, rec: JobRecord, live: Callable[[JobRecord], None] | None = None,
              done: Callable[[JobRecord], None] | None = None) -> None:
    """The job's status; polls every POLL_SECONDS only while the job is active, then reruns once."""
    m = job_manager()
    was_active = rec.active

    @st.fragment(run_every=POLL_SECONDS if was_active else None)
    def panel():
        now = m.get(rec.id)
        cols = st.columns([5, 1])
        with cols[0]:
            job_status(now)
        with cols[1]:
            if now.active and now.session == session_id():
                if st.button("Cancel", key=f"cancel:{page}", icon=":material/stop_circle:"):
                    try:
                        now = m.cancel(now.id, session=session_id())
                    except JobError as e:
                        st.error(str(e))
                    if now.status == "queued" or not now.active:
                        st.rerun()
            elif not now.active:
                if st.button("Dismiss", key=f"dismiss:{page}"):
                    forget_job(page)
                    st.rerun()
        if live is not None and (now.status in ("running", "done") or now.progress):
            live(now)
        if was_active and (not now.active or now.status != rec.status):
            st.rerun()  # once per change (queued -> running -> finished): the page's banner follows

    panel()
    if not was_active and done is not None:
        done(m.get(rec.id))


def job_banner(rec: JobRecord, where: str = "below", box=None) -> None:
    """One line pointing at the job panel (refreshed by the panel's rerun when the job ends)."""
    words = {"queued": f"queued (position {rec.position})", "running": "running", "done": "finished",
             "failed": "failed", "cancelled": "cancelled", "interrupted": "interrupted"}[rec.status]
    (box or st).caption(f"{'↓' if where == 'below' else '↑'} job **{plain(rec.label or rec.kind)}** is {words}: "
                        f"its progress and result are {where}.")


def queue_rows(jobs: list[JobRecord], me: str) -> list[dict]:
    """One row per queued or running job, as every session sees them: what, for whom, how long."""
    rows = []
    for j in jobs:
        who = "you" if j.session == me else ("everyone" if j.kind == "classroom" else "another session")
        if j.status == "running":
            left = j.remaining
            state = f"running {_fmt_seconds(j.elapsed)}" + (f", about {_fmt_seconds(left)} left in this step"
                                                             if left is not None else "")
            frac = j.fraction
        else:
            state, frac = f"queued, position {j.position}", None
        rows.append({"job": j.label or j.kind, "for": who, "state": state,
                     "step": (progress_text(j.progress) + (f" · {j.progress['threads']}" if j.progress.get("threads")
                                                           else "")) if j.status == "running" else "",
                     "fraction": frac})
    return rows


def sidebar_jobs(current_page: str | None = None) -> None:
    """The shared queue in the sidebar, seen by every browser session; it polls only while jobs are active."""
    try:
        m = job_manager()
        active = bool(m.active())
    except Exception:
        return

    # idle sessions look again every QUEUE_IDLE_SECONDS (one SQLite query, the sidebar only) so a job
    # started in another browser shows up; while jobs run, every POLL_SECONDS
    @st.fragment(run_every=POLL_SECONDS if active else QUEUE_IDLE_SECONDS)
    def queue():
        try:
            jobs = m.active()
        except Exception:
            return
        if bool(jobs) != active:
            st.rerun()  # the queue started or emptied: rerun once to switch the polling rate
        if not jobs:
            st.caption("Job queue: empty.")
            return
        st.markdown(f"**Job queue** ({len(jobs)}): one worker, first in first out.")
        for r in queue_rows(jobs, session_id()):
            st.caption(f"**{plain(r['job'])}** for {r['for']}: {r['state']}"
                       + (f"  \n{plain(r['step'])}" if r["step"] else ""))
            if r["fraction"] is not None:
                st.progress(r["fraction"])

    with st.sidebar:
        queue()


# --- rendering helpers --------------------------------------------------------------------------------
def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg if isinstance(e, (ParamError, RunError, JobError)) else f"{type(e).__name__}: {msg}"


one_line = _one_line


def error(e: BaseException, box=None) -> None:
    (box or st).error(_one_line(e), icon=":material/error:")


_MD_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:")


def plain(text: Any) -> str:
    """User text (a run name, a job label) escaped so st.markdown shows it as typed: no links,
    no images fetched from elsewhere, no formatting. Newlines become spaces."""
    s = " ".join(str(text).split())
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in s)


def user_error_types() -> tuple[type[BaseException], ...]:
    from .data import DataError
    from .weights import WeightsError
    return (ParamError, RunError, JobError, DataError, WeightsError)


def damaged(e: BaseException, box=None) -> None:
    """One message for a user-facing error; a damaged run is named with what is wrong."""
    from .runs import DamagedRun, RegistryError
    if isinstance(e, DamagedRun):
        (box or st).error(f"Run `{e.run_id}` is damaged: {e.what}. The rest of the workspace is unaffected; "
                          "delete the run on the Runs page or restore its files.", icon=":material/broken_image:")
    elif isinstance(e, RegistryError):
        (box or st).error(f"{e}", icon=":material/database:")
    else:
        error(e, box)


class guard:
    """`with ui.guard():` around one part of a page: a user-facing error (a damaged run, a missing
    file, a refused setting) becomes one message there and the rest of the page still renders."""

    def __init__(self, box=None):
        self.box = box

    def __enter__(self):
        return self

    def __exit__(self, typ, e, tb) -> bool:
        if e is not None and isinstance(e, user_error_types()):
            damaged(e, self.box)
            return True
        return False


def load_split_on_click(page: str, data: dict, box=None):
    """load_split, except that folder data (a server path from the URL or a widget) is read only after
    an explicit click on this page for exactly these paths; until then a DataError says so."""
    from .data import DataError, load_split
    if data.get("dataset") == "folder":
        key = json.dumps([data.get(k) for k in ("data_dir", "private_list", "public_list")])
        sk = f"{page}:folder_ok"
        if st.session_state.get(sk) != key:
            if (box or st).button("Read this data folder", key=f"{page}:read_folder", icon=":material/folder_open:",
                                  disabled=not data.get("data_dir")):
                st.session_state[sk] = key
            else:
                raise DataError("folder data is read only when you click 'Read this data folder' "
                                "(from the workspace or a folder listed in MIVIS_DATA_ROOTS)")
    return load_split(data)


def run_page(page) -> None:
    """Run the routed page; a user-facing error that escapes it (a damaged run or registry) is one
    message instead of an exception box."""
    try:
        page.run()
    except user_error_types() as e:
        damaged(e)


def crisp(img, size: int = 128):
    """Upscale a small uint8 image (H, W[, C]) with nearest neighbour so faces stay sharp."""
    import numpy as np
    from PIL import Image
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    im = Image.fromarray(arr)
    factor = max(1, size // max(im.size))
    return im.resize((im.size[0] * factor, im.size[1] * factor), Image.NEAREST) if factor > 1 else im


def png_scaled(path, max_width: int = 1000, factor: int = 2):
    """A PNG grid upscaled by a whole factor (nearest neighbour) when it stays under max_width."""
    from PIL import Image
    with Image.open(path) as im:
        im.load()
        w, h = im.size
        f = factor if w * factor <= max_width else 1
        return im.resize((w * f, h * f), Image.NEAREST) if f > 1 else im.copy()


def png_row_pages(path, row_height: int, *, per_page: int = 10, key: str, pad: int = 2, caption: str = "") -> None:
    """A tall grid PNG (one row per identity, e.g. an attack's reconstructions.png) shown `per_page`
    rows at a time with a page picker, instead of one image thousands of pixels high."""
    from PIL import Image
    with Image.open(path) as im:
        im.load()
        w, h = im.size
        n_rows = max(1, round((h - pad) / row_height))
        pages = max(1, -(-n_rows // per_page))
        page = st.number_input(f"Rows {per_page} at a time: page (of {pages})", 1, pages, 1, key=key) \
            if pages > 1 else 1
        top = (page - 1) * per_page * row_height
        bottom = min(h, top + per_page * row_height + pad)
        crop = im.crop((0, top, w, bottom))
    f = 2 if w * 2 <= 1000 else 1
    st.image(crop.resize((w * f, crop.size[1] * f), Image.NEAREST) if f > 1 else crop,
             caption=caption + (f" Rows {(page - 1) * per_page + 1}-{min(n_rows, page * per_page)} of {n_rows}."
                                if pages > 1 else ""), width="content")


def png_crisp(path_or_bytes, size: int = 128):
    from PIL import Image
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    with Image.open(src) as im:
        im.load()
        w, h = im.size
        factor = max(1, size // max(w, h))
        return im.resize((w * factor, h * factor), Image.NEAREST) if factor > 1 else im.copy()


def plot(fig, *, key: str | None = None, on_select: str = "ignore", height: int | None = None):
    """An interactive plotly figure, full width (a figure that sets its own margins keeps them)."""
    fig.update_layout(template="plotly_white")
    if fig.layout.margin.t is None:
        fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    if height:
        fig.update_layout(height=height)
    kwargs = {"key": key} if key else {}
    if on_select != "ignore":
        kwargs.update(on_select=on_select, selection_mode=("points",))
    return st.plotly_chart(fig, width="stretch", config={"displaylogo": False}, **kwargs)


def metric_text(m: Any, pct: bool = True) -> str:
    """'37% [22, 52]' for a {"value", "lo", "hi"} metric; plain numbers formatted too."""
    if isinstance(m, dict) and "value" in m:
        v, lo, hi = m.get("value"), m.get("lo"), m.get("hi")
        if v is None:
            return "-"
        f = (lambda x: f"{100 * x:.0f}") if pct else (lambda x: f"{x:.3g}")
        ci = f" [{f(lo)}, {f(hi)}]" if lo is not None and hi is not None else ""
        return f"{f(v)}{'%' if pct else ''}{ci}"
    if isinstance(m, float):
        return f"{100 * m:.1f}%" if pct and 0 <= m <= 1 else f"{m:.4g}"
    return str(m)


def run_label(r: RunRecord) -> str:
    when = time.strftime("%m-%d %H:%M", time.localtime(r.created or 0))
    name = " ".join((r.name or r.kind).split())[:80] + (" (damaged)" if r.damage else "")
    return f"{name} · {r.id[-6:]} · {when}"


def download_json(label: str, obj: Any, file_name: str, key: str | None = None) -> None:
    st.download_button(label, json.dumps(obj, indent=1, default=str), file_name=file_name,
                       mime="application/json", key=key, icon=":material/download:")


# --- result views shared by Home (precomputed demo), Results and Layers ---------------------------------
def _face_image(src, size: int, correct: bool | None = None, frame: bool = False):
    """A face from a uint8 array or a PNG path/bytes, upscaled; framed in the verdict's colour."""
    import numpy as np
    from PIL import Image

    from .figures import framed
    if hasattr(src, "shape"):
        arr = np.asarray(src)
    else:
        with Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src) as im:
            arr = np.asarray(im.convert("L") if im.mode in ("L", "I", "P", "1") else im.convert("RGB"))
    return framed(arr, correct, size) if frame else crisp(arr, size)


def face_pairs(pairs: list[dict], per_row: int = 5, size: int = 88, rows: list[tuple[str, str]] | None = None) -> None:
    """Per identity (a column): the real private face, then its reconstruction under each model in a frame
    coloured by the evaluation model's verdict AND labelled with a symbol and a word (✓ right /
    ✗ wrong: judged s7), and for a wrong verdict the real face of the identity the judge picked.

    Each pair: {"identity", "real" (uint8 array or PNG path/bytes), "recon" (same), "correct" (bool or
    None), "likelihood" (float or None), "predicted" (label), "predicted_real" (image, optional),
    "<key>": {"recon", "correct", "likelihood", "predicted", "predicted_real"} for further models}.
    rows: [(key, row label)] of the models to show, "" for the pair itself (default: [("", "")])."""
    from .figures import verdict_text
    rows = rows or [("", "")]
    for start in range(0, len(pairs), per_row):
        cols = st.columns(per_row)
        for col, pr in zip(cols, pairs[start:start + per_row]):
            with col:
                st.markdown(f"**{pr.get('identity', '')}**")
                if pr.get("real") is not None:
                    st.image(_face_image(pr["real"], size), width="content", caption="real face")
                for key, row_label in rows:
                    v = pr.get(key) if key else pr
                    if not v or v.get("recon") is None:
                        continue
                    verdict = v.get("correct")
                    st.image(_face_image(v["recon"], size, verdict, frame=True), width="content")
                    lk = v.get("likelihood")
                    txt = (f"{row_label}  \n" if row_label else "") + verdict_text(verdict, v.get("predicted"))
                    if lk is not None:
                        txt += f"  \nconfidence {lk:.1%}"
                    st.caption(txt)
                    if verdict is False and v.get("predicted_real") is not None:
                        st.image(_face_image(v["predicted_real"], size // 2), width="content",
                                 caption=f"this is {v.get('predicted')}")


def likelihood_histogram(groups: list[dict], *, split: bool = True, bins: int = 24, key: str | None = None) -> None:
    """The paper's Fig. 2: the target's confidence in the attacked identity for every reconstruction, as
    log-odds (confident reconstructions all sit in p_T's 0.95-1 bin otherwise), runs side by side,
    optionally split by the evaluation model's verdict (mivis.figures.likelihood_histogram_figure).

    groups: [{"label": str, "likelihood": [floats], "correct": [bools]}]."""
    from .figures import likelihood_histogram_figure
    plot(likelihood_histogram_figure(groups, split=split, bins=bins), key=key, height=380)


def fisher_bars(layers: list[str], series: dict[str, list[float]], *, title: str = "Fisher information per layer",
                key: str | None = None, y_range: tuple[float, float] | None = None, height: int = 480,
                ratio_range: tuple[float, float] | None = None, compact: bool = False) -> None:
    """Fisher information per layer (input -> output): each loss's share of its own total on a log
    axis, and with two losses the model-inversion / classification ratio per layer
    (mivis.figures.fisher_figure). y_range: a shared axis for plots side by side."""
    from .figures import fisher_figure
    fig = fisher_figure(layers, series, title=title, y_range=y_range, ratio_range=ratio_range, compact=compact)
    plot(fig, key=key, height=height)


# plain words first, the symbol after; fractions shown as percentages everywhere (Runs and Results agree)
METRIC_WORDS = {
    "attack_acc_top1": "Attack accuracy, top-1", "attack_acc_top5": "Attack accuracy, top-5",
    "attack_acc_top1_selected": "Top-1, best restart", "attack_acc_top5_selected": "Top-5, best restart",
    "target_success": "Target success",  # short: two runs side by side leave ~22 characters a card
    "target_likelihood": "Target confidence p_T", "knn_dist": "KNN distance",
    "feature_frechet_distance": "Feature Fréchet dist.", "natural_acc": "Natural accuracy",
    "train_acc": "Training accuracy", "train_seconds": "Training time (s)", "params": "Parameters",
    "trainable_params": "Trained parameters (|θ_C|)", "n_reconstructions": "Reconstructions",
    "attack_seconds": "Attack time (s)", "evaluate_seconds": "Judging time (s)",
}
FRACTION_METRICS = {"attack_acc_top1", "attack_acc_top5", "attack_acc_top1_selected", "attack_acc_top5_selected",
                    "target_success", "natural_acc", "train_acc"}


def metric_words(key: str) -> str:
    """A metric's name in plain words ('target_success' -> 'Target success (target's own top-1)')."""
    return METRIC_WORDS.get(key, key.replace("_", " ").capitalize())


def metric_is_fraction(key: str) -> bool:
    """Whether a metric is a fraction shown as a percentage (so 'target success' reads 100%, never 1)."""
    return key in FRACTION_METRICS or key.endswith("_acc") or "_acc_" in key


def settings_differ(n: int) -> str:
    return "Same settings" if n == 0 else (f"{n} setting differs" if n == 1 else f"{n} settings differ")


def paired_words(d: dict, a: str = "A", b: str = "B") -> str:
    """A paired difference in top-1 attack accuracy (a − b, from evaluation.compare_runs) in words that
    say which run leaks less: 'resolved: A leaks 11 pp less than B'."""
    v = 100 * d["value"]
    head = (f"Paired difference in top-1 attack accuracy, {a} − {b}: **{v:+.1f} pp** "
            f"[{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] over {d['n']} identities: ")
    if not d.get("resolved"):
        return head + f"**not resolved**: the interval contains 0, so neither {a} nor {b} is shown to leak less."
    less, more = (a, b) if v < 0 else (b, a)
    return head + f"**resolved: {less} leaks {abs(v):.0f} pp less than {more}**."


def metric_row(items: list[dict], per_row: int = 3) -> None:
    """items: [{"label", "value" (metric dict or number), "pct" (bool), "help"}], at most `per_row`
    cards a row (six in one row cut their labels and values off at 1024 px)."""
    per_row = max(1, min(per_row, len(items) or 1))
    for start in range(0, len(items), per_row):
        cols = st.columns(per_row)
        for col, it in zip(cols, items[start:start + per_row]):
            v, pct = it["value"], it.get("pct", True)
            if isinstance(v, dict) and "value" in v:
                col.metric(it["label"], metric_text({"value": v["value"]}, pct), help=it.get("help"))
                if v.get("lo") is not None and v.get("hi") is not None:
                    f = (lambda x: f"{100 * x:.0f}%") if pct else (lambda x: f"{x:.3g}")
                    col.caption(f"95% CI [{f(v['lo'])}, {f(v['hi'])}] · n={v.get('n', '?')}")
            else:
                col.metric(it["label"], metric_text(v, pct), help=it.get("help"))


def _group_metrics(items: list[dict]) -> dict[str, list[dict]]:
    """{"full": [{"label": "Natural acc.", ...}], ...} from labels such as "Natural acc. (full)"."""
    import re
    groups: dict[str, list[dict]] = {}
    for it in items:
        m = re.match(r"^(.*?)\s*\(([^()]+)\)\s*$", it.get("label", ""))
        who, label = (m.group(2), m.group(1)) if m else ("", it.get("label", ""))
        groups.setdefault(who, []).append({**it, "label": label})
    return groups


MODEL_NAMES = {"full": "Full model (no defense)", "RoLSS": "RoLSS: last stage's skip connections removed"}
METRIC_NAMES = {"Natural acc.": "Natural accuracy (test images)", "Attack acc. top-1": "Attack accuracy, top-1",
                "Attack acc. top-5": "Attack accuracy, top-5"}


def metrics_table(items: list[dict]) -> str:
    """A markdown table, one row per model and one column per metric, from labels such as
    "Natural acc. (full)" (a table wraps its words at any width; metric cards cut them off)."""
    groups = _group_metrics(items)
    cols: list[str] = []
    for its in groups.values():
        cols += [it["label"] for it in its if it["label"] not in cols]
    head = "| Model | " + " | ".join(METRIC_NAMES.get(c, c) for c in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for who, its in groups.items():
        by = {it["label"]: it for it in its}
        cells = []
        for c in cols:
            it = by.get(c)
            if it is None:
                cells.append("–")
                continue
            v = it["value"]
            cells.append(metric_text(v, it.get("pct", True)) if v is not None else "–")
        lines.append(f"| {MODEL_NAMES.get(who, who) or '–'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    if spec.get("caption"):
        st.markdown(spec["caption"])
    if spec.get("metrics"):
        st.markdown(metrics_table(spec["metrics"]))
    if spec.get("pairs"):
        pairs = []
        for p in spec["pairs"]:
            q = {**p, "real": folder / p["real"], "recon": folder / p["recon"]}
            if p.get("predicted_real"):
                q["predicted_real"] = folder / p["predicted_real"]
            if p.get("defended"):
                d = dict(p["defended"])
                d["recon"] = folder / d["recon"]
                if d.get("predicted_real"):
                    d["predicted_real"] = folder / d["predicted_real"]
                q["defended"] = d
            pairs.append(q)
        both = all(p.get("defended") for p in pairs)
        if both:
            st.markdown("**The same identities under each model.** Top: a real private face. Then the attack's "
                        "reconstruction under the full model and under RoLSS, framed green with ✓ when the "
                        "evaluation model recognises the identity, red with ✗ when it judges someone else "
                        "(whose real face is shown below it). Confidence: the target's confidence in the "
                        "attacked identity (p_T).")
            face_pairs(pairs, rows=[("", "full model"), ("defended", "RoLSS")])
        else:
            st.markdown(f"**Reconstructions under the {MODEL_NAMES['full'].lower()} only** (this demo does not "
                        "ship the RoLSS run's reconstructions; RoLSS appears in the numbers above and in the "
                        "histogram below). Top: a real private face. Below: the attack's reconstruction, framed "
                        "green with ✓ when the evaluation model recognises the identity, red with ✗ when it "
                        "judges someone else, whose real face is shown under it. Confidence: the target's "
                        "confidence in the attacked identity (p_T).")
            face_pairs(pairs)
    if spec.get("histograms"):
        likelihood_histogram(spec["histograms"], key="demo_hist")
        st.caption("Both models make most reconstructions with high confidence; a defense works when more of "
                   "its confident reconstructions are judged to be the wrong person (hatched bars).")
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


# --- architecture diagram -------------------------------------------------------------------------------
def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else (f"{n / 1e3:.1f}k" if n >= 1e3 else str(n))


def stage_dot(desc: dict, max_blocks: int = 4, wrap_over: int = 6) -> str:
    """A Graphviz (DOT) diagram of stages and blocks from `mivis.surgery.describe`: an arc around
    every block that carries a skip (solid = kept, dashed = scaled by s, none = removed). Blocks (and the
    stem) marked "frozen" (TL-DMI: not trained on private data) are grey and say so. With more than
    `wrap_over` blocks shown (DenseNet, EfficientNet) each stage is one row, stages top to bottom, so the
    diagram stays readable instead of one long line shrunk to the page's width."""
    kind = desc.get("skip_kind", "")
    shown_total = sum(min(len(s_["blocks"]), max_blocks) for s_ in desc["stages"])
    wrap = shown_total > wrap_over
    lines = ["digraph G {", f'rankdir={"TB" if wrap else "LR"}; nodesep=0.2; ranksep=0.3; bgcolor="transparent";',
             'node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
             'fillcolor="#eef3fb", color="#8aa4c8", height=0.35];',
             'edge [color="#555555", arrowsize=0.6];',
             'input [label="input", shape=plaintext, style=""];']
    chain: list[tuple[str, dict | None, float | None]] = [("input", None, None)]
    rows: list[list[str]] = []  # wrapped: each stage's node ids (one row each)
    if desc.get("stem_frozen") is not None:
        frozen = desc["stem_frozen"]
        lines.append(f'stem [label="stem{chr(92)}n{"frozen" if frozen else "trained"}", '
                     f'fillcolor="{"#d9d9d9" if frozen else "#eef3fb"}", color="{"#8c8c8c" if frozen else "#8aa4c8"}"];')
        chain.append(("stem", None, None))
    for st_ in desc["stages"]:
        i, blocks, scale = st_["index"], st_["blocks"], st_.get("scale")
        removed = st_["has_skip"] and scale == 0
        scaled = st_["has_skip"] and scale is not None and 0 < scale < 1
        state = ("no skips" if not st_["has_skip"] else "skips removed" if removed
                 else f"skips x{scale:g}" if scaled else "skips kept")
        n_frozen = sum(1 for b in blocks if b.get("frozen"))
        if n_frozen:
            state += " · frozen" if n_frozen == len(blocks) else f" · {n_frozen} of {len(blocks)} frozen"
        fill = "#fde2e1" if removed else ("#fff4d6" if scaled else "#eef3fb")
        lines.append(f'subgraph cluster_{i} {{ label="{st_["name"]}\n{state} · {_fmt_params(st_["params"])}"; '
                     f'fontname="Helvetica"; fontsize=10; style="rounded"; color="#b8c4d6";')
        shown = list(enumerate(blocks))
        if len(blocks) > max_blocks:
            shown = shown[:max_blocks - 1] + [(-1, None)] + shown[-1:]
        ids = []
        for j, b in shown:
            nid = f"s{i}b{j if j >= 0 else 'more'}"
            ids.append(nid)
            if b is None:
                lines.append(f'{nid} [label="… {len(blocks) - max_blocks} more", shape=plaintext, style=""];')
                chain.append((nid, None, None))
            else:
                if b.get("frozen"):
                    lines.append(f'{nid} [label="{b["type"]}\nfrozen", fillcolor="#d9d9d9", color="#8c8c8c"];')
                else:
                    lines.append(f'{nid} [label="{b["type"]}", fillcolor="{fill}"];')
                s = scale if kind == "concatenative" else b.get("scale")
                chain.append((nid, b, s))
        if wrap:
            lines.append("{rank=same; " + "; ".join(ids) + ";}")
            rows.append(ids)
        lines.append("}")
    lines.append('head [label="head", fillcolor="#e6f4ea", color="#7fb58f"];')
    chain.append(("head", None, None))
    row_ends = {r[-1] for r in rows}
    for (a, _, _), (b, _, _) in zip(chain, chain[1:]):
        # wrapped: the edge from a row's end to the next row does not pull the rows into a staircase
        lines.append(f"{a} -> {b}" + (" [constraint=false];" if wrap and a in row_ends else ";"))
    if wrap:  # stack the rows, left-aligned: invisible heavy edges between the rows' first nodes
        firsts = [chain[0][0]] + (["stem"] if desc.get("stem_frozen") is not None else []) + [r[0] for r in rows]
        for a, b in zip(firsts, firsts[1:]):
            if not (a == "input" and firsts[1] == "stem" and b == "stem"):
                lines.append(f"{a} -> {b} [style=invis, weight=10];")
        lines.append(f"{rows[-1][0]} -> head [style=invis, weight=10];" if rows else "")
    for k in range(1, len(chain) - 1):
        nid, b, s = chain[k]
        if b is None or not b.get("skip"):
            continue
        a, c = chain[k - 1][0], chain[k + 1][0]
        if s is None or s >= 1:
            lines.append(f'{a} -> {c} [constraint=false, color="#2b6cb0", penwidth=1.4];')
        elif s > 0:
            lines.append(f'{a} -> {c} [constraint=false, style=dashed, color="#d69e2e", label="x{s:g}", fontsize=8];')
    lines.append("}")
    return "\n".join(lines)


def stage_diagram(desc: dict) -> None:
    """The stage diagram at a readable size: a long one (wrapped, one row per stage) at its natural size,
    a short one across the page."""
    dot = stage_dot(desc)
    st.graphviz_chart(dot, width="content" if "rankdir=TB" in dot else "stretch")


def attack_curves(events: list[dict], *, key: str | None = None) -> None:
    """Loss and target likelihood over the attack's iterations (means over all latents)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    chunks = {e.get("chunk", 1) for e in events}
    xs = [e["iteration"] + (e.get("chunk", 1) - 1) * e["iterations"] for e in events]
    fig.add_trace(go.Scatter(x=xs, y=[e.get("loss") for e in events], name="loss", mode="lines"))
    fig.add_trace(go.Scatter(x=xs, y=[e.get("p_target") for e in events], name="target likelihood p_T(y|x)",
                             mode="lines"), secondary_y=True)
    fig.update_xaxes(title="iteration" + (" (chunks one after another)" if len(chunks) > 1 else ""))
    fig.update_yaxes(title="loss", secondary_y=False)
    fig.update_yaxes(title="p_T", range=[0, 1.02], secondary_y=True)
    fig.update_layout(legend=dict(orientation="h", y=-0.3), title="Attack progress")
    plot(fig, key=key, height=320)


def to_display(img) -> "np.ndarray":
    """A [-1, 1] float image (C, H, W) -> uint8 (H, W) or (H, W, 3) for display."""
    from .figures import to_display as _to_display
    return _to_display(img)


def overlay(img, amap, size: int = 192, alpha: float = 0.65):
    """Grey image with a signed attribution map on top (red = raises the class score, blue = lowers
    it), saturating at the map's 99th percentile (mivis.figures.overlay)."""
    from .figures import overlay as _overlay
    return _overlay(img, amap, size, alpha)
