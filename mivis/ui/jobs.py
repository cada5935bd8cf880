"""The job panel of a page (status, queue position, progress with the time left, cancel) and the shared
queue every browser session sees in the sidebar. Jobs run in mivis.jobs' workers; this only reads them."""
from __future__ import annotations

from typing import Callable, Iterable

import streamlit as st

from ..jobs import JobError, JobRecord
from ..params import ParamError
from ..runs import RunError
from .errors import _one_line, damaged
from .session import _session_alive, job_manager, session_id
from .words import plain

POLL_SECONDS = 1.5          # job polling interval while a job is active (1-2 s: see docs)
QUEUE_IDLE_SECONDS = 10.0   # the sidebar's shared queue, while nothing runs


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
        cols = st.columns([3, 1])  # [5, 1] cut the Cancel button to "Can…" at 1024 px
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
