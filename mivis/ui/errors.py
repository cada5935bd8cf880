"""Errors as one message in the page: `guard` around an independent part, `run_page` as the backstop,
`damaged` naming a damaged run and what is wrong with it."""
from __future__ import annotations

import streamlit as st

from ..jobs import JobError
from ..params import ParamError
from ..runs import RunError


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg if isinstance(e, (ParamError, RunError, JobError)) else f"{type(e).__name__}: {msg}"


one_line = _one_line


def error(e: BaseException, box=None) -> None:
    (box or st).error(_one_line(e), icon=":material/error:")


def user_error_types() -> tuple[type[BaseException], ...]:
    from ..data import DataError
    from ..weights import WeightsError
    return (ParamError, RunError, JobError, DataError, WeightsError)


def damaged(e: BaseException, box=None) -> None:
    """One message for a user-facing error; a damaged run is named with what is wrong."""
    from ..runs import DamagedRun, RegistryError
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


def run_page(page) -> None:
    """Run the routed page; a user-facing error that escapes it (a damaged run or registry) is one
    message instead of an exception box."""
    try:
        page.run()
    except user_error_types() as e:
        damaged(e)
