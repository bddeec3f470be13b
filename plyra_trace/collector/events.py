"""Fan committed writes out to live-stream subscribers (SSE) without ever blocking the writer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, Final

from plyra_trace.collector.model import Row, SpanRecord, WriteResult

Event = tuple[str, Row]
MAX_SPANS_PER_EVENT: Final = 500
"""A ``spans`` event lists at most this many spans (its ``count`` is always the full number)."""


class Broadcaster:
    """Thread-safe publish to asyncio subscribers; a slow subscriber drops events, never blocks."""

    def __init__(self, queue_size: int = 1024) -> None:
        self._queue_size = queue_size
        self._subscribers: dict[asyncio.Queue[Event], asyncio.AbstractEventLoop] = {}
        self._lock = threading.Lock()

    def subscribe(self) -> asyncio.Queue[Event]:
        """A new queue of events for the calling event loop."""
        queue: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        with self._lock:
            self._subscribers[queue] = asyncio.get_running_loop()
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        """Stop delivering to ``queue``."""
        with self._lock:
            self._subscribers.pop(queue, None)

    @property
    def subscribers(self) -> int:
        """How many subscribers are listening."""
        with self._lock:
            return len(self._subscribers)

    def publish_write(self, result: WriteResult, spans: Sequence[SpanRecord] = ()) -> None:
        """Announce the spans, traces and edges one committed write changed."""
        if not self.subscribers:
            return
        shown = [_span_event(span) for span in spans[:MAX_SPANS_PER_EVENT]]
        events: list[Event] = [("spans", {"count": result.spans, "spans": shown})]
        events += [("trace", trace) for trace in result.traces]
        events += [("edge", edge) for edge in result.edges]
        self.publish(events)

    def publish(self, events: list[Event]) -> None:
        """Deliver events to every subscriber's loop."""
        with self._lock:
            targets = list(self._subscribers.items())
        for queue, loop in targets:
            try:
                loop.call_soon_threadsafe(_offer, queue, events)
            except RuntimeError:
                self.unsubscribe(queue)


def _offer(queue: asyncio.Queue[Event], events: list[Event]) -> Any:
    for event in events:
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            return None
    return None


def _span_event(span: SpanRecord) -> Row:
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "kind": span.kind,
        "service": span.service,
        "agent": span.agent_effective or span.agent,
        "status": span.status,
        "start_ns": span.start_ns,
        "duration_ns": span.duration_ns,
        "cost": span.cost,
    }
