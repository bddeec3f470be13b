"""Fan committed writes out to live-stream subscribers (SSE) without ever blocking the writer."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from plyra_trace.collector.model import Row, WriteResult

Event = tuple[str, Row]


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

    def publish_write(self, result: WriteResult) -> None:
        """Announce the traces and edges one committed write changed."""
        if not self.subscribers:
            return
        events: list[Event] = [("spans", {"count": result.spans})]
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
