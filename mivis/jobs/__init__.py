"""Jobs: long work (training, priors, attacks, analyses) run outside the app's script thread.

One `JobManager` per server process. A job is a registered kind plus JSON-able params; its
function runs on a worker thread with a `Reporter` (progress callback + cancel Event) and a
workspace that links every run it creates to the job. Workers are daemon threads fed by a
FIFO `queue.Queue`: one per GPU, one on CPU. Each session may have one active (queued or
running) job. Job state lives in the workspace's SQLite file (`jobs` and `job_events` tables),
so a page reload or a server restart finds the job again; a job whose server died is shown as
interrupted. Nothing here imports streamlit.
"""
from __future__ import annotations

# the package by concern: records.py (job records on disk), kinds.py (JOB_KINDS, job_kind, JobContext),
# manager.py (the queue and its workers), previews.py (live previews), builtin.py (the built-in kinds).
from .kinds import JOB_KINDS, JobContext, job_kind
from .manager import JobManager, _EventSink, _TrackingWorkspace, _user_errors, detect_devices
from .previews import _Preview
from .records import (_LIVE, _LIVE_LOCK, _SCHEMA, ACTIVE, JOB_ID_RE, STATUSES, JobError, JobRecord, _clean,
                      _jsonable, _manager_alive, progress_fraction, runs_in)
from . import builtin  # noqa: E402,F401  (registers train, attack, prior, layers, classroom)
from .builtin import (ATTACK_FIELDS, PRIOR_FIELDS, _attack_job, _classroom_job, _layers_job, _prior_job,
                      _train_job, _validate_attack, _validate_classroom, _validate_layers, _validate_prior,
                      _validate_train)

__all__ = ["ACTIVE", "ATTACK_FIELDS", "JOB_ID_RE", "JOB_KINDS", "PRIOR_FIELDS", "STATUSES", "JobContext",
           "JobError", "JobManager", "JobRecord", "detect_devices", "job_kind",
           "progress_fraction", "runs_in"]
