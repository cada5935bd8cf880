"""A voter's id that survives reloads and new tabs of the same browser (Be the judge: one vote per item per voter).

Streamlit's session id changes on every reload, and a query parameter is lost by a new tab (and edited at will),
so the id lives in a first-party cookie, `mivis_voter`. The server reads it from the browser's request
(st.context.cookies, sent with every new connection); a browser without it gets a fresh random id for this
session, and an empty iframe's script (st.iframe runs it same-origin) writes that id into the cookie
(SameSite=Strict, one year) so the next reload or tab sends it back. If another tab set a different id first,
the script reloads the page so both tabs vote as the one browser. A browser that refuses cookies (or a private window, or cleared cookies) is a new
voter: the id identifies a browser, not a person (DEVELOPERS.md / README say so).
"""
from __future__ import annotations

import re
import secrets

import streamlit as st

COOKIE = "mivis_voter"
_VALID = re.compile(r"^v-[0-9a-f]{24}$")
_STATE = "_mivis_voter"


def voter_id() -> str:
    """This browser's voter id (the cookie's, or a new one that the page then stores in the cookie)."""
    try:
        cookie = st.context.cookies.get(COOKIE)
    except Exception:  # pragma: no cover - no request context (bare mode)
        cookie = None
    if isinstance(cookie, str) and _VALID.match(cookie):
        st.session_state[_STATE] = cookie
        return cookie
    if not _VALID.match(str(st.session_state.get(_STATE, ""))):
        st.session_state[_STATE] = "v-" + secrets.token_hex(12)
    return st.session_state[_STATE]


def remember_voter(vid: str) -> None:
    """Write the id into the browser's cookie unless the request already carried it (call once, at the page's
    end: it is an empty iframe)."""
    try:
        if st.context.cookies.get(COOKIE) == vid:
            return
    except Exception:  # pragma: no cover
        pass
    if not _VALID.match(vid):
        return
    st.iframe(f"""<script>
const want = "{vid}";
const doc = window.parent.document;
const m = doc.cookie.match(/(?:^|; ){COOKIE}=([^;]*)/);
if (!m) {{
  doc.cookie = "{COOKIE}=" + want + "; path=/; max-age=31536000; SameSite=Strict";
}} else if (m[1] !== want && /^v-[0-9a-f]{{24}}$/.test(m[1])) {{
  window.parent.location.reload();  // another tab of this browser set the id first: vote as that one
}}
</script>""", height="content", width="content")
