"""Live spans: spans still open after a short delay are announced to a plyra collector.

A span that runs longer than ``delay`` seconds is sent as a "started" record (an OTLP span with no
end time) to the collector's ``/v1/live`` endpoint, and re-sent every ``heartbeat`` seconds while it
stays open, so long agent runs show while they run and a killed process leaves its spans behind.

Cost on the hot path: ``on_start`` stores the span in a dict and ``on_end`` pops it; everything
else (finding spans past the delay, snapshots, encoding, HTTP) happens on ONE background thread.
The open-span dict is capped. Records go only to a plyra collector: it names itself in a response
header on ``/v1/traces``, learnt from the exporter's own responses (a response hook on its HTTP
session) or, when a span is due before any export happened, from one empty OTLP export sent by
the background thread. Any other backend gets exactly the finished spans.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Status, StatusCode

from plyra_trace._export import _fork_safe_session
from plyra_trace._safety import log_once, logger
from plyra_trace._semconv import LIVE_HEARTBEAT

COLLECTOR_HEADER: Final = "x-plyra-collector"
"""Response header a plyra collector sets on OTLP answers (its version)."""
LIVE_PATH: Final = "/v1/live"
_TRACES_PATH: Final = "/v1/traces"
_PROTOBUF: Final = "application/x-protobuf"
_MAX_PER_REQUEST: Final = 512
_PROBE_RETRY_S: Final = 15.0

UNKNOWN, PLYRA, OTHER = "unknown", "plyra", "other"


def live_url(traces_url: str) -> str | None:
    """The live endpoint next to an OTLP ``.../v1/traces`` URL (None for any other layout)."""
    base = traces_url.rstrip("/")
    if not base.endswith(_TRACES_PATH):
        return None
    return base[: -len(_TRACES_PATH)] + LIVE_PATH


class LiveSpanProcessor(SpanProcessor):
    """Tracks open spans cheaply; a background thread announces the long-running ones."""

    def __init__(
        self,
        traces_url: str,
        url: str,
        headers: Mapping[str, str],
        *,
        delay: float = 1.0,
        heartbeat: float = 5.0,
        forced: bool = False,
        max_open: int = 10_000,
        timeout: float = 5.0,
    ) -> None:
        self._traces_url = traces_url
        self._url = url
        self._headers = {**headers, "content-type": _PROTOBUF}
        self._delay_ns = int(delay * 1e9)
        self._heartbeat = heartbeat
        self._max_open = max_open
        self._timeout = timeout
        self.state = PLYRA if forced else UNKNOWN
        self._tracking = True
        self._open: dict[int, Span] = {}
        self._announced: dict[int, tuple[Span, float]] = {}
        self._next_probe = 0.0
        self.skipped = 0
        """Spans not tracked because ``max_open`` spans were open already."""
        self._tick = max(0.02, min(delay if delay > 0 else heartbeat, heartbeat) / 2)
        # Made here, not on the background thread: a fork while that thread held an import
        # lock would deadlock the child (prefork workers fork right after start-up).
        self._session = _fork_safe_session()
        self._session.hooks["response"].append(self.observe)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_thread()
        _after_fork.add(self)

    # --- hot path ---------------------------------------------------------------------------
    # Keyed by the id of the span's SpanContext: the one object the live span, the readable copy
    # on_end receives and compat's rebuilt copies share (cheaper than reading its span_id). A
    # span whose on_end never came here (a pipeline swapped meanwhile) is forgotten by the
    # background thread, which skips every span that has ended.
    def on_start(self, span: Span, parent_context: Any = None) -> None:
        if len(self._open) < self._max_open:
            self._open[id(span.context)] = span
        elif self._tracking:
            self.skipped += 1

    def on_end(self, span: ReadableSpan) -> None:
        self._open.pop(id(span.context), None)

    # --- identification ---------------------------------------------------------------------
    def observe(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """A ``requests`` response hook on the exporter's session: learn who answers."""
        try:
            if response.headers.get(COLLECTOR_HEADER):
                self.state = PLYRA
            elif self.state == UNKNOWN and 200 <= response.status_code < 300:
                self._not_plyra()
        except Exception:
            log_once("live-observe", "plyra_trace: could not read the collector's answer")

    def _not_plyra(self) -> None:
        self.state = OTHER
        self._tracking = False
        self._max_open = 0
        self._open.clear()

    # --- background thread ------------------------------------------------------------------
    def _start_thread(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plyra-live", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            if self.state == OTHER:
                return
            try:
                self.announce_due()
            except Exception:
                log_once("live-tick", "plyra_trace: announcing live spans failed")

    def announce_due(self) -> int:
        """Send records for spans past the delay and due a heartbeat; how many were sent."""
        if not self._open:
            self._announced.clear()
            return 0
        now_ns, now = time.time_ns(), time.monotonic()
        open_spans = self._open.copy()
        due: list[Span] = []
        for key, span in open_spans.items():
            if now_ns - (span.start_time or now_ns) < self._delay_ns:
                break  # insertion order is start order: the rest are younger still
            if span.end_time is not None:  # ended, but its on_end never came here
                self._open.pop(key, None)
                continue
            last = self._announced.get(key)
            if last is None or last[0] is not span or now - last[1] >= self._heartbeat:
                due.append(span)
        for key in [k for k in self._announced if k not in open_spans]:
            del self._announced[key]
        if not due or not self._identified(now):
            return 0
        snapshots = [s for s in map(self._snapshot, due) if s is not None]
        for start in range(0, len(snapshots), _MAX_PER_REQUEST):
            self._send(snapshots[start : start + _MAX_PER_REQUEST])
        for span in due:
            self._announced[id(span.context)] = (span, now)
        return len(snapshots)

    def _identified(self, now: float) -> bool:
        """True once the endpoint is known to be a plyra collector; asks it (one empty OTLP
        export) when a span is due before any export answered."""
        if self.state == UNKNOWN and now >= self._next_probe:
            self._next_probe = now + _PROBE_RETRY_S
            try:
                self._post(self._traces_url, b"")
            except Exception as error:
                log_once(
                    "live-probe",
                    f"plyra_trace: cannot reach {self._traces_url} for live spans ({error})",
                    exc_info=False,
                )
        return self.state == PLYRA

    def _snapshot(self, span: Span) -> ReadableSpan | None:
        """The span as it is now, without an end time; None if it ended or is being written."""
        if span.end_time is not None:
            return None
        try:
            attributes = dict(span.attributes or {})
        except RuntimeError:  # attributes changed while copied: next tick
            return None
        attributes[LIVE_HEARTBEAT] = self._heartbeat
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            links=span.links,
            kind=span.kind,
            status=Status(StatusCode.UNSET),
            start_time=span.start_time,
            end_time=None,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _send(self, snapshots: list[ReadableSpan]) -> None:
        body = encode_spans(snapshots).SerializeToString()
        try:
            response = self._post(self._url, body)
        except Exception as error:
            log_once(
                "live-send",
                f"plyra_trace: cannot send live spans to {self._url} ({error})",
                exc_info=False,
            )
            return
        if response.status_code == 404 and self.state != OTHER:
            logger.warning("plyra_trace: %s does not take live spans (404); not sending", self._url)
            self._not_plyra()
        elif response.status_code >= 300:
            log_once(
                "live-status",
                f"plyra_trace: the collector answered {response.status_code} to live spans",
                exc_info=False,
            )

    def _post(self, url: str, body: bytes) -> Any:
        return self._session.post(url, data=body, headers=self._headers, timeout=self._timeout)

    # --- lifecycle --------------------------------------------------------------------------
    def _reset_after_fork(self) -> None:
        """In a forked child: the parent's open spans never end here; start afresh."""
        self._open.clear()
        self._announced.clear()
        if self._thread is not None and not self._stop.is_set():
            self._start_thread()

    def shutdown(self) -> None:
        self._tracking = False
        self._max_open = 0
        self._stop.set()
        self._open.clear()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)  # a send in flight is bounded by its own timeout
        _after_fork.discard(self)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class _AfterFork:
    """Live processors of this process, reset in a forked child (threads do not survive fork)."""

    def __init__(self) -> None:
        self._processors: weakref.WeakSet[LiveSpanProcessor] = weakref.WeakSet()
        self._registered = False

    def add(self, processor: LiveSpanProcessor) -> None:
        self._processors.add(processor)
        if not self._registered and hasattr(os, "register_at_fork"):
            self._registered = True
            os.register_at_fork(after_in_child=self._in_child)

    def discard(self, processor: LiveSpanProcessor) -> None:
        self._processors.discard(processor)

    def _in_child(self) -> None:
        for processor in list(self._processors):
            try:
                processor._reset_after_fork()
            except Exception:
                pass


_after_fork = _AfterFork()


def live_processor(
    traces_url: str | None,
    protocol: str | None,
    headers: Mapping[str, str],
    live: bool | None,
    delay: float,
    heartbeat: float,
    timeout: float | None,
) -> LiveSpanProcessor | None:
    """The live processor ``init()`` installs, or None: off with ``live=False``, without an
    OTLP/HTTP endpoint, or where no live endpoint can be derived from it."""
    if delay < 0:
        raise ValueError(f"live_delay must be >= 0, not {delay!r}")
    if heartbeat <= 0:
        raise ValueError(f"live_heartbeat must be > 0, not {heartbeat!r}")
    if live is False or traces_url is None:
        return None
    url = live_url(traces_url) if protocol == "http/protobuf" else None
    if url is None:
        if live:
            logger.warning(
                "plyra_trace: live=True needs an OTLP/HTTP endpoint ending in /v1/traces; "
                "live spans are off"
            )
        return None
    return LiveSpanProcessor(
        traces_url,
        url,
        headers,
        delay=delay,
        heartbeat=heartbeat,
        forced=bool(live),
        timeout=min(timeout or 5.0, 5.0),
    )
