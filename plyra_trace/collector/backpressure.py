"""Backpressure: a byte budget for request bodies received but not yet committed.

Every front end (OTLP/HTTP, OTLP/gRPC) takes bytes from one budget before it keeps a body and
gives them back when the writer has committed (or refused) it. Past the budget a request is
answered with OTLP's throttling reply (HTTP 503 + ``Retry-After``, gRPC ``UNAVAILABLE`` +
``RetryInfo``), so memory stays bounded however many senders wait.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any


class InflightBudget:
    """Thread-safe count of held bytes with a ceiling.

    A request alone in the budget is always let in (even one larger than the budget, up to the
    body limit, streamed or not), so a small budget slows ingest down but never stops it.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit = max(0, limit_bytes)
        self._held = 0
        self._refused = 0
        self._lock = threading.Lock()

    def take(self, size: int, mine: int = 0) -> bool:
        """Hold ``size`` more bytes for a request already holding ``mine``; False (and nothing
        more held) if that would pass the budget while other requests hold bytes too."""
        with self._lock:
            if self._held > mine and self._held + size > self.limit:
                self._refused += 1
                return False
            self._held += size
            return True

    def give_back(self, size: int) -> None:
        """Release bytes taken earlier."""
        if size:
            with self._lock:
                self._held = max(0, self._held - size)

    def give_back_when_done(self, future: Future[Any], size: int) -> None:
        """Release ``size`` bytes once the writer has resolved ``future`` (committed or failed),
        whatever happens to the request that waits for it."""
        future.add_done_callback(lambda _: self.give_back(size))

    @property
    def held(self) -> int:
        """Bytes held right now."""
        with self._lock:
            return self._held

    @property
    def refused(self) -> int:
        """Requests refused so far (a throttling reply each)."""
        with self._lock:
            return self._refused


THROTTLED_REASON = "the collector is busy (too much data waiting to be stored); retry later"
