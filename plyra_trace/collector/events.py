"""The live stream, calm: per listener, the latest state of each trace and edge, sent in bursts.

The writer thread merges every committed write into each listener's pending state (a trace's or
an edge's newer summary replaces the older one; both maps are bounded), then wakes the listener.
A listener sends at most one ``update`` event per ``interval``; one that reads slowly simply
finds fewer, fuller updates. Neither the writer nor the server's memory waits on a listener.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Sequence
from typing import Final

from plyra_trace.collector.model import Row, SpanRecord, WriteResult

Event = tuple[str, Row]
"""``("spans", {"count": n})``, ``("trace", summary)`` or ``("edge", edge)``."""
INTERVAL_SECONDS: Final = 0.5
"""Least time between two updates to one listener (so at most two events a second)."""
MAX_PENDING: Final = 200
"""Traces (and, apart, edges) one listener keeps pending; past it the oldest go and the update
says ``truncated`` (the listener refetches what it shows)."""


class Listener:
    """One stream client's pending state; ``offer`` from any thread, the rest on its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = MAX_PENDING) -> None:
        self.loop = loop
        self.ready = asyncio.Event()
        self._limit = limit
        self._lock = threading.Lock()
        self._spans = 0
        self._traces: dict[Hashable, Row] = {}
        self._edges: dict[Hashable, Row] = {}
        self._truncated = False
        self._woken = False

    def offer(self, events: Sequence[Event]) -> bool:
        """Merge events (latest state wins); True when the listener needs waking."""
        with self._lock:
            for kind, data in events:
                if kind == "spans":
                    self._spans += int(data.get("count", 0))
                elif kind == "trace":
                    self._put(self._traces, data.get("trace_id"), data)
                elif kind == "edge":
                    key = (data.get("from"), data.get("to"), data.get("protocol"))
                    self._put(self._edges, key, data)
            wake, self._woken = not self._woken, True
        return wake

    def take(self) -> Row | None:
        """Everything pending as one update (None if nothing), and start afresh."""
        with self._lock:
            self._woken = False
            self.ready.clear()
            if not (self._spans or self._traces or self._edges):
                return None
            update: Row = {
                "spans": self._spans,
                "traces": list(self._traces.values()),
                "edges": list(self._edges.values()),
                "truncated": self._truncated,
            }
            self._spans, self._traces, self._edges, self._truncated = 0, {}, {}, False
        return update

    @property
    def pending(self) -> int:
        """Traces and edges waiting to be sent."""
        with self._lock:
            return len(self._traces) + len(self._edges)

    def _put(self, pending: dict[Hashable, Row], key: Hashable, value: Row) -> None:
        pending.pop(key, None)  # re-insert: the newest are the last to be dropped
        pending[key] = value
        if len(pending) > self._limit:
            del pending[next(iter(pending))]
            self._truncated = True


class Broadcaster:
    """Thread-safe fan-out of committed writes to live-stream listeners; never blocks."""

    def __init__(self, interval: float = INTERVAL_SECONDS, limit: int = MAX_PENDING) -> None:
        self.interval = interval
        self._limit = limit
        self._listeners: set[Listener] = set()
        self._lock = threading.Lock()

    def subscribe(self) -> Listener:
        """A new listener on the calling event loop."""
        listener = Listener(asyncio.get_running_loop(), self._limit)
        with self._lock:
            self._listeners.add(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        """Stop delivering to ``listener``."""
        with self._lock:
            self._listeners.discard(listener)

    @property
    def subscribers(self) -> int:
        """How many listeners there are."""
        with self._lock:
            return len(self._listeners)

    def publish_write(self, result: WriteResult, spans: Sequence[SpanRecord] = ()) -> None:
        """Announce what one committed write changed: its span count, the summaries of the
        traces and the edges it touched (never the spans themselves)."""
        if not self.subscribers:
            return
        events: list[Event] = [("spans", {"count": result.spans})]
        events += [("trace", trace) for trace in result.traces]
        events += [("edge", edge) for edge in result.edges]
        self.publish(events)

    def publish(self, events: Sequence[Event]) -> None:
        """Merge events into every listener and wake those that were idle."""
        with self._lock:
            targets = list(self._listeners)
        for listener in targets:
            if listener.offer(events):
                try:
                    listener.loop.call_soon_threadsafe(listener.ready.set)
                except RuntimeError:  # its loop is closed
                    self.unsubscribe(listener)
