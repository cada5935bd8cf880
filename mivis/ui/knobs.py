"""Knobs: widgets generated from Param declarations (type, range and help from the declaration) whose
values live in the URL, validated and clamped on read."""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import streamlit as st

from ..params import FLOAT_LIST, INT_LIST, Param, ParamError
from .words import _label, choice_words

JOB_KEY_URL = "job"


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
               options: Iterable | None = None, slider: bool | None = None, sticky: bool = False,
               on_change: Callable[[], None] | None = None) -> Any:
        """Render the widget for `p` (type, range and help from the declaration) and return its value.
        sticky: keep the value in the URL even when it equals the default (a run id must not drift).
        on_change: a callback (e.g. a preset writing other widgets' values into st.session_state)."""
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
                          format_func=format_func, slider=slider, on_change=on_change)
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
        """One widget per param; returns {name: value}. With columns > 1 the switches (bool params) follow the
        grid in one row of their own, each as wide as its label (a grid column cuts a switch's label off with
        an ellipsis at 1024 px: "Channel…")."""
        out = {}
        params = [p for p in params if p.name not in set(exclude)]
        flags = [p for p in params if p.type is bool] if columns > 1 else []
        grid = [p for p in params if p not in flags]
        cols = (container or st).columns(columns) if columns > 1 and grid else None
        for i, p in enumerate(grid):
            c = cols[i % columns] if cols else container
            out[p.name] = self.widget(p, name=prefix + p.name, container=c)
        if flags:
            row = (container or st).container(horizontal=True, gap="medium")
            for p in flags:
                out[p.name] = self.widget(p, name=prefix + p.name, container=row)
        return out


_MISSING = object()


_INVALID = object()


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
    if p.default is not None and p.max > p.min and 0 < (p.default - p.min) / (p.max - p.min) < 0.01:
        return False  # a value in the slider's first 1% (MID's beta 0.003 of 0-10) cannot be set by dragging
    return p.step is not None


def param_input(p: Param, key: str, *, label: str | None = None, container=None, help: str | None = None,
                disabled: bool = False, format_func: Callable | None = None, slider: bool | None = None,
                on_change: Callable[[], None] | None = None) -> Any:
    """The Streamlit widget for one Param (its value comes from st.session_state[key]). on_change runs before
    the next rerun's script (a callback: what it writes into st.session_state is never lost to a rerun)."""
    c = container or st
    label = label or _label(p)
    help = help or (p.help + (f" ({p.allowed()})" if p.choices is None and p.type is not bool else ""))
    if p.type is bool:
        return c.toggle(label, key=key, help=help, disabled=disabled, on_change=on_change)
    if p.choices is not None:
        return c.selectbox(label, list(p.choices), key=key, help=help, disabled=disabled, on_change=on_change,
                           format_func=format_func or choice_words)
    if p.type in (FLOAT_LIST, INT_LIST) or p.type is str:
        return c.text_input(label, key=key, help=help, disabled=disabled, on_change=on_change,
                            placeholder="comma-separated" if p.type in (FLOAT_LIST, INT_LIST) else "")
    use_slider = _use_slider(p) if slider is None else slider
    if p.type is int:
        lo = None if p.min is None else int(p.min)
        hi = None if p.max is None else int(p.max)
        step = int(p.step or 1)
        if use_slider:
            return c.slider(label, lo, hi, step=step, key=key, help=help, disabled=disabled,
                            on_change=on_change)
        return c.number_input(label, lo, hi, step=step, key=key, help=help, disabled=disabled,
                              on_change=on_change)
    lo = None if p.min is None else float(p.min)
    hi = None if p.max is None else float(p.max)
    if use_slider:  # as many decimals as the step has (MID's beta 0.003 read "0.00" with the default)
        decimals = max(0, -math.floor(math.log10(float(p.step)))) if p.step else 2
        return c.slider(label, lo, hi, step=float(p.step), key=key, help=help, disabled=disabled,
                        on_change=on_change, format=f"%.{decimals}f")
    small = p.default is not None and 0 < abs(p.default) < 0.01
    return c.number_input(label, lo, hi, step=float(p.step) if p.step else None, key=key, help=help,
                          disabled=disabled, format="%.2e" if small else None, on_change=on_change)


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
