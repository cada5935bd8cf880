"""`python -m mivis`: a thin command line over the library.

Each command group lives in its own module with `register(subparsers)`; flags come from the
same parameter declarations the UI uses.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from ..data import DataError
from ..params import ParamError
from ..progress import Cancelled
from ..runs import RunError
from ..weights import WeightsError

COMMAND_MODULES = ["data", "train", "runs"]
EXTRA_COMMAND_MODULES: list[str] = ["prior", "attack", "evaluate", "analyze", "sweep", "report", "prepare", "judge", "classroom",
                                    "import_model"]

# commands that may compute for long: their torch thread count fits the cores free now
LONG_COMMANDS = {"train", "prior", "attack", "evaluate", "analyze", "sweep", "classroom"}

USER_ERRORS = (ParamError, DataError, RunError, WeightsError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mivis", description="mivis: model-inversion explorer")
    parser.add_argument("--workspace", help="workspace folder (default: $MIVIS_WORKSPACE or ./workspace)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES + EXTRA_COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in LONG_COMMANDS:
        from ..threads import fit_threads
        load = fit_threads()
        if load.source == "measured" and load.threads < load.cores:
            print(f"busy machine: {load.describe()}", file=sys.stderr)
    held = None
    try:
        with _workspace_env(args.workspace):
            if args.command in LONG_COMMANDS:  # the runs it names are in use while it runs: `runs delete` refuses them
                from ._common import hold_named_runs
                held = hold_named_runs(args)
            return args.func(args) or 0
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("\ncancelled", file=sys.stderr)
        return 130
    finally:
        if held is not None:
            try:
                held.release()
            except RunError:  # the registry went away meanwhile: the lease is stale with this process anyway
                pass


@contextlib.contextmanager
def _workspace_env(path: str | None):
    """--workspace is the workspace for everything the command does, a data root included (as
    $MIVIS_WORKSPACE would be); restored afterwards, so a call of main() leaves the process as it was."""
    if not path:
        yield
        return
    import os
    from pathlib import Path

    from ..runs import ENV_VAR
    before = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(Path(path).expanduser().resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = before
