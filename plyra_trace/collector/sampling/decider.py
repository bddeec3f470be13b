"""The decider loop: every so often, decide the traces that went quiet, in small batches.

Runs on its own thread beside the writer. Each batch is one short transaction, and the loop pauses
between batches so ingest always gets the store in between: a backlog (after a restart, say) is
worked off without stalling acknowledgements.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from plyra_trace.collector.sampling.decide import decide_batch
from plyra_trace.collector.sampling.policy import SamplingPolicy
from plyra_trace.collector.storage import Storage

_log = logging.getLogger(__name__)
_PAUSE_S: Final = 0.01
_LOG_EVERY_S: Final = 60.0


class Decider:
    """Decides due traces with ``policy`` and hands the decisions to ``storage``."""

    def __init__(
        self,
        storage: Storage,
        policy: SamplingPolicy,
        *,
        batch: int = 256,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._storage = storage
        self._policy = policy
        self._batch = batch
        self._clock = clock
        self._interval = min(1.0, max(0.05, policy.decision_wait_s / 4))
        self._stop = threading.Event()
        self._last_error = 0.0
        self._thread = threading.Thread(target=self._run, name="plyra-sampling", daemon=True)

    @classmethod
    def launch(cls, storage: Storage, policy: SamplingPolicy) -> Decider:
        """Start deciding for a collector: new traces wait for decisions when the policy samples;
        traces left pending by an earlier run are decided in any case."""
        if policy.active:
            storage.enable_sampling()
        decider = cls(storage, policy)
        decider.start()
        return decider

    def start(self) -> None:
        """Start deciding in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the batch in progress (undecided traces are decided after a restart)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def run_once(self) -> int:
        """Decide one batch of due traces; how many were due."""
        wait_ns = int(self._policy.decision_wait_s * 1e9)
        due = self._storage.pending_decisions(self._clock(), wait_ns, self._batch)
        if not due:
            return 0
        sessions = [facts.session_id for facts in due if facts.session_id is not None]
        sticky = self._storage.sticky_sessions(sessions)
        self._storage.apply_decisions(decide_batch(due, self._policy, sticky))
        return len(due)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                while self.run_once() >= self._batch and not self._stop.wait(_PAUSE_S):
                    pass
            except Exception:
                if time.monotonic() - self._last_error > _LOG_EVERY_S:
                    self._last_error = time.monotonic()
                    _log.exception("sampling decisions failed; retrying (spans are kept)")


__all__ = ["Decider"]
