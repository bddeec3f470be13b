"""Retention: traces older than N days are deleted at start-up and then periodically.

Deletion runs on its own thread in short steps (one transaction each, sized to take about
:data:`STEP_TARGET_S`), so the writer never waits long for it: on SQLite a step holds the one
write lock, on PostgreSQL it drops a whole day partition or deletes a few hundred traces.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final

from plyra_trace.collector.storage import Storage

_log = logging.getLogger(__name__)
DAY_NS: Final = 86_400 * 10**9
STEP_TARGET_S: Final = 0.05
"""How long one deletion step should take; the step size adapts to it."""
INTERVAL_S: Final = 300.0
"""Time between sweeps once the store holds nothing expired."""


class Retention:
    """A daemon thread deleting expired traces from ``storage`` until stopped."""

    def __init__(self, storage: Storage, days: float, *, interval_s: float = INTERVAL_S) -> None:
        if days <= 0:
            raise ValueError("retention days must be positive")
        self._storage = storage
        self._age_ns = int(days * DAY_NS)
        self._interval = interval_s
        self._step = 200
        self._stop = threading.Event()
        self.deleted = 0
        """Traces (or PostgreSQL day partitions) deleted so far."""
        self.sweeps = 0
        """Completed sweeps (each one ends with nothing expired left)."""
        self._thread = threading.Thread(target=self._run, name="plyra-retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:
                _log.warning("retention step failed; retrying later", exc_info=True)
                self._stop.wait(min(self._interval, 30.0))
                continue
            self._stop.wait(self._interval)

    def sweep(self) -> None:
        """Delete everything expired now, one short step at a time."""
        cutoff = time.time_ns() - self._age_ns
        while not self._stop.is_set():
            started = time.perf_counter()
            deleted = self._storage.delete_expired(cutoff, self._step)
            elapsed = time.perf_counter() - started
            self.deleted += deleted
            if deleted == 0:
                break
            if elapsed > STEP_TARGET_S:
                self._step = max(10, self._step // 2)
            elif elapsed < STEP_TARGET_S / 3:
                self._step = min(5_000, self._step * 2)
            self._stop.wait(min(elapsed, STEP_TARGET_S))  # leave the writer its turn
        self.sweeps += 1

    def stop(self) -> None:
        """End the thread (a running step finishes first)."""
        self._stop.set()
        self._thread.join(5.0)
