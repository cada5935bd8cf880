"""Helpers shared by command modules: workspace, progress printing, tables."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from ..progress import Reporter
from ..runs import Workspace


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default, except None, False and "": registry flags print their own default in their help."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == "":
            return action.help
        return super()._get_help_string(action)

    def _expand_help(self, action):
        # help texts come from parameter declarations written for people ("50% of the epochs"): a % that
        # does not start an argparse field is a literal percent sign
        import copy
        import re
        literal = copy.copy(action)
        literal.help = re.sub(r"%(?!\()", "%%", action.help or "")
        return super()._expand_help(literal)


def workspace(args, create: bool = True) -> Workspace:
    """The command's workspace; `create=False` (commands that only read it) refuses a missing one."""
    return Workspace(getattr(args, "workspace", None), create=create)


def hold_named_runs(args):
    """A lease (runs.lease) on every existing run the command's arguments name, held while the command runs
    (released by `main`; stale once this process is gone); None when it names none."""
    import os

    from ..runs import valid_run_id
    ids: list[str] = []

    def walk(v) -> None:
        if isinstance(v, str) and valid_run_id(v):
            ids.append(v)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
    for k, v in vars(args).items():
        if k != "func":
            walk(v)
    if not ids:
        return None
    return workspace(args).lease(ids, f"the command `{args.command}` (pid {os.getpid()})", missing_ok=True)


def console_reporter(quiet: bool = False) -> Reporter:
    """Prints progress at most twice a second; Ctrl-C sets the cancel flag (clean stop)."""
    cancel = threading.Event()
    if threading.current_thread() is threading.main_thread():
        def on_sigint(signum, frame):
            if cancel.is_set():
                raise KeyboardInterrupt
            cancel.set()
            print("\nstopping after this step (Ctrl-C again to abort)", file=sys.stderr)
        signal.signal(signal.SIGINT, on_sigint)
    t0 = time.monotonic()

    def show(ev: dict) -> None:
        if quiet:
            return
        parts = [f"{k}={_fmt(v)}" for k, v in ev.items() if k not in ("phase",)]
        line = f"[{time.monotonic() - t0:6.1f}s] {ev.get('phase', '')}: " + " ".join(parts)
        end = "\n" if ev.get("phase") in ("epoch", "done", "data cached") else "\r"
        print(line[:160].ljust(100), end=end, file=sys.stderr, flush=True)
    return Reporter(show, cancel, min_interval=0.5)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=1, default=str))


def printable(text) -> str:
    """User text (e.g. a run name) for a terminal: control characters (escape sequences, newlines)
    become '?', so a name can neither break the table nor drive the terminal."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def table(rows: list[list], header: list[str]) -> str:
    cols = [header] + [[printable(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cols)


def given_for(args, names, entry, *, dest_prefix: str = "", what: str) -> dict:
    """The flags among `names` (a union over a registry) the user gave, refusing any that the
    chosen entry does not declare; `what` names the entry in the message (e.g. "resnet18")."""
    from ..params import ParamError
    out = {}
    for name in names:
        v = getattr(args, dest_prefix + name, None)
        if v is not None:
            if name not in entry.params:
                raise ParamError(f"--{name.replace('_', '-')} does not apply to {what}")
            out[name] = v
    return out
