"""Job kinds: the JOB_KINDS registry, the `job_kind` decorator and the JobContext a job function gets."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..progress import Reporter
from ..registry import Registry
from ..runs import Workspace
from .records import JobError

JOB_KINDS = Registry("job kind")


def job_kind(name: str, *, validate: Callable[[dict, Workspace], dict] | None = None, help: str = "",
             single: bool = False):
    """Register `fn(params, ctx) -> dict | None` as a job kind. `validate(params, workspace) -> params`
    runs in the submitting thread, so a bad setting is refused before anything is queued. A `single` kind
    (the shared classroom set-up) is refused while one is queued or running for any session."""
    def deco(fn):
        JOB_KINDS.register(name, fn, help=help, validate=validate, single=single)
        return fn
    return deco


@dataclass
class JobContext:
    """What a job function gets besides its params."""
    job_id: str
    workspace: Workspace  # runs created through it are linked to the job
    reporter: Reporter
    device: str           # "cpu" or "cuda:i": the worker's device
    dir: Path             # the job's own folder (live previews, logs)

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Atomically write a preview file (e.g. the current reconstructions) into the job folder."""
        p = (self.dir / name).resolve()
        if self.dir.resolve() not in p.parents:
            raise JobError(f"file name {name!r} escapes the job folder")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{secrets.token_hex(3)}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return p

