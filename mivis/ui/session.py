"""The server and the browser session: paths, the page router, the workspace, the shared job manager,
this session's id, and reading a data folder only after a click."""
from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from ..jobs import JobManager
from ..runs import RunError, Workspace
from .errors import damaged

ROOT = Path(__file__).resolve().parent.parent.parent
from ..paths import assets_dir
ASSETS = assets_dir()
ORL_CREDIT = "ORL faces: AT&T Laboratories Cambridge"


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


def load_split_on_click(page: str, data: dict, box=None):
    """load_split, except that folder data (a server path from the URL or a widget) is read only after
    an explicit click on this page for exactly these paths; until then a DataError says so."""
    from ..data import DataError, load_split
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
