"""The single writer: requests queue spans, one thread commits them in batched transactions.

A request's future resolves only after the transaction holding its spans committed, which is
when the request may be acknowledged. Batching requests per transaction makes ingest fast.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Final

from plyra_trace.collector.model import SpanRecord, WriteResult
from plyra_trace.collector.storage import Storage, StorageUnavailable

_log = logging.getLogger(__name__)
_STOP: Final = None

Prepare = Callable[[], Sequence[SpanRecord]]
"""Work that yields spans (decoding + normalising), run on the writer thread just before writing."""
_Item = tuple["Sequence[SpanRecord] | Prepare", "Future[int]"]
_PREPARE_WEIGHT = 512  # how many spans a not-yet-prepared request counts for when batching


class Writer:
    """Owns all writes to a storage; ``submit`` from any thread, ``stop`` drains then joins."""

    def __init__(
        self,
        storage: Storage,
        *,
        max_batch_spans: int = 20_000,
        on_commit: Callable[[WriteResult, Sequence[SpanRecord]], None] | None = None,
    ) -> None:
        self._storage = storage
        self._max_batch = max_batch_spans
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name="plyra-collector-writer", daemon=True
        )
        self._stopped = False
        self._thread.start()

    def submit(self, spans: Sequence[SpanRecord] | Prepare) -> Future[int]:
        """Queue spans (or work that yields them); the future resolves with their count once
        committed, or with the error. Preparing on this thread keeps the event loop free and
        avoids two threads fighting over the GIL for every request."""
        future: Future[int] = Future()
        if self._stopped:
            future.set_exception(RuntimeError("the collector is shutting down"))
        elif not callable(spans) and not spans:
            future.set_result(0)
        else:
            self._queue.put((spans, future))
        return future

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then end the thread."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            size = _weight(first[0])
            stop = False
            while size < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
                size += _weight(item[0])
            self._commit(_prepared(batch))
            if stop:
                return

    def _commit(self, batch: list[tuple[Sequence[SpanRecord], Future[int]]]) -> None:
        if not batch:
            return
        try:
            committed = [span for spans, _ in batch for span in spans]
            result = self._storage.write(committed)
        except Exception as error:
            if len(batch) > 1 and not isinstance(error, StorageUnavailable):
                # One bad request must not fail the others it happened to be batched with.
                for item in batch:
                    self._commit([item])
                return
            if isinstance(error, StorageUnavailable):
                _log.warning("database unavailable; %d requests answered 503", len(batch))
                for _, future in batch:
                    future.set_exception(error)
                return
            _log.exception("could not store %d spans", len(batch[0][0]))
            batch[0][1].set_exception(RuntimeError("storage failed; the spans were not stored"))
            return
        for spans, future in batch:
            future.set_result(len(spans))
        if self._on_commit is not None:
            try:
                self._on_commit(result, committed)
            except Exception:
                _log.exception("live-stream publish failed")


def _weight(spans: Sequence[SpanRecord] | Prepare) -> int:
    return _PREPARE_WEIGHT if callable(spans) else len(spans)


def _prepared(batch: list[_Item]) -> list[tuple[Sequence[SpanRecord], Future[int]]]:
    """Run pending preparation; a request whose preparation fails fails alone."""
    ready: list[tuple[Sequence[SpanRecord], Future[int]]] = []
    for spans, future in batch:
        if callable(spans):
            try:
                spans = spans()
            except Exception as error:
                future.set_exception(error)
                continue
        if spans:
            ready.append((spans, future))
        else:
            future.set_result(0)
    return ready
