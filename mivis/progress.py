"""Progress reporting and cancellation for long work (training, priors, attacks, analyses).

Library code calls `reporter.report(...)` with small JSON-able fields and `reporter.check()`
every step; the job system or the CLI supplies the callback and the cancel flag.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable


class Cancelled(Exception):
    """Raised by `Reporter.check()` when the user asked to stop."""


class Reporter:
    def __init__(self, callback: Callable[[dict], None] | None = None,
                 cancel: threading.Event | None = None, min_interval: float = 0.0):
        self.callback = callback
        self.cancel = cancel or threading.Event()
        self.min_interval = min_interval
        self._last = 0.0

    def report(self, force: bool = False, **fields: Any) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.min_interval:
            self._last = now
            self.callback(fields)

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled by user")

    def child(self, **fixed: Any) -> "Reporter":
        """A reporter for a sub-task that tags every event (e.g. phase='pretrain')."""
        parent = self

        def cb(fields):
            if parent.callback is not None:
                parent.callback({**fixed, **fields})
        r = Reporter(cb if self.callback else None, self.cancel, self.min_interval)
        return r


NULL = Reporter()
