"""Run a sweep's steps as Ray tasks: one GPU per step where the cluster has GPUs, else N CPUs.

The driver plans, deduplicates and orders the steps exactly as the local runner does; each wave's
steps (whose dependencies are finished runs) become tasks that call the same `execute()` against
the same workspace, so reuse, resume and the registry are identical and no two tasks ever get the
same step. Workers must see the workspace at the same path: a local instance does; on a cluster put
the workspace on shared storage (NFS, a mounted bucket). A worker that cannot see it fails its step
with a message saying so, before any compute. The mivis package travels to the workers with the
task (Ray `py_modules`), so nodes need only the requirements installed.

Ray is optional (requirements-ray.txt); nothing here is imported unless a sweep asks for Ray.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..params import ParamError
from ..progress import Cancelled, Reporter
from ..runs import Workspace
from .steps import Step, execute

TOKEN_DIR = ".ray-tokens"  # a file the driver writes and every worker must be able to read


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ParamError("Ray is not installed: `pip install -r requirements-ray.txt` (an optional extra), "
                         "or run the sweep without --ray") from None
    return ray


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds on an address nobody listens on (ray.init would retry for minutes)."""
    import socket
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ParamError(f"Ray address {address!r} is not 'local', 'auto', host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ParamError(f"cannot reach the Ray cluster at {address!r}: {e.strerror or e}") from None


def connect(address: str, num_cpus: int | None = None) -> None:
    """address: 'local' starts a Ray instance on this machine; 'auto' joins the cluster this machine
    belongs to; anything else is a cluster address (ray://host:10001 or host:6379)."""
    ray = _import_ray()
    if ray.is_initialized():
        return
    import mivis
    env = {"py_modules": [str(Path(mivis.__file__).resolve().parent)],
           "env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}}
    kw: dict = {"runtime_env": env, "log_to_driver": False, "include_dashboard": False}
    if address == "local":
        kw.update(num_cpus=num_cpus or os.cpu_count() or 1, object_store_memory=128 * 1024 ** 2)
    else:
        if address != "auto":
            _check_reachable(address)
        kw["address"] = address
    try:
        ray.init(**kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ParamError(f"cannot reach the Ray cluster at {address!r}: {e}") from None


def _run_step(kind: str, spec: dict, deps: list, label: str, ws_path: str, token: str, runs: dict,
              threads: int):
    """The task body: runs on a worker, returns ("ok", run id) or ("error", message)."""
    import platform
    if not (Path(ws_path) / TOKEN_DIR / token).exists():
        return ("error", f"worker {platform.node()} cannot see the workspace {ws_path}: put the workspace on "
                         "storage every node mounts at the same path")
    import torch
    torch.set_num_threads(max(1, threads))
    try:
        return ("ok", execute(Step(kind, spec, deps, label), Workspace(ws_path), runs))
    except Exception as e:  # one failed step skips its dependants, as in the local runner
        return ("error", f"{type(e).__name__}: {e}")


class RayExecutor:
    """An Executor for run_sweep: runs a wave's steps in parallel as Ray tasks."""

    def __init__(self, address: str = "local", cpus_per_step: int = 1, gpus_per_step: float | None = None,
                 num_cpus: int | None = None):
        if cpus_per_step < 1:
            raise ParamError(f"cpus per step must be at least 1, got {cpus_per_step}")
        self.ray = _import_ray()
        connect(address, num_cpus)
        have_gpus = self.ray.cluster_resources().get("GPU", 0) > 0
        self.gpus = (1 if have_gpus else 0) if gpus_per_step is None else gpus_per_step
        self.cpus = cpus_per_step
        self.task = self.ray.remote(_run_step)
        self.token = secrets.token_hex(8)

    def __call__(self, steps: list[Step], ws: Workspace, runs: dict, reporter: Reporter) -> dict:
        ray = self.ray
        tokens = ws.path / TOKEN_DIR
        tokens.mkdir(exist_ok=True)
        (tokens / self.token).touch()
        out: dict = {}
        refs = {}
        for s in steps:
            if s.kind == "existing" or (s.kind == "prior" and s.spec.get("shipped")):
                # a run the grid names, or a file copy from this checkout's assets/: no task needed
                out[s.key] = execute(s, ws, runs)
                continue
            ref = self.task.options(num_cpus=self.cpus, num_gpus=self.gpus, name=s.label[:60] or s.kind).remote(
                s.kind, s.spec, s.deps, s.label, str(ws.path.resolve()), self.token, dict(runs), self.cpus)
            refs[ref] = s
        waiting = list(refs)
        try:
            while waiting:
                reporter.check()
                ready, waiting = ray.wait(waiting, num_returns=1, timeout=1.0)
                for ref in ready:
                    s = refs[ref]
                    try:
                        status, value = ray.get(ref)
                    except Exception as e:  # the worker died (OOM kill, node lost)
                        status, value = "error", f"Ray task failed: {type(e).__name__}: {e}"
                    out[s.key] = value if status == "ok" else RuntimeError(value)
                    reporter.report(force=True, phase="step", step=s.label, kind=s.kind,
                                    status="done" if status == "ok" else "failed")
        except Cancelled:
            for ref in waiting:
                ray.cancel(ref, force=True)
            raise
        finally:
            (tokens / self.token).unlink(missing_ok=True)
        return out
