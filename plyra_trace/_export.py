"""Where spans go: OTLP over HTTP or gRPC, the console tree, or an exporter the caller brings.

Also keeps the books: spans exported, dropped by the bounded queue and lost in failed export
calls are counted where that happens (``ExportHealth``), and the OpenTelemetry exporters' own
complaints are kept to one line each (a dead endpoint, a full queue, a collector asking to
retry later), with a hint.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.util.re import parse_env_headers

from plyra_trace import _safety

HTTP_PROTOBUF: Final = "http/protobuf"
GRPC: Final = "grpc"
_TRACES_PATH: Final = "/v1/traces"
# Spans per OTLP request. With the default queue of DEFAULT_MAX_QUEUE_SIZE spans, a burst of
# 10,000 spans fits before the first batch has left.
_MAX_EXPORT_BATCH: Final = 512
DEFAULT_MAX_QUEUE_SIZE: Final = 16_384

_SESSION_PROVIDER: Final = "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER"
_QUEUE_LOGGER: Final = "opentelemetry.sdk._shared_internal"
_EXPORT_LOGGERS: Final = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
)


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def resolve_protocol(protocol: str | None) -> str:
    """The OTLP protocol: argument, else OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL, else http."""
    chosen = (
        protocol
        or _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        or HTTP_PROTOBUF
    )
    chosen = chosen.strip().lower()
    if chosen in ("http", "http/protobuf", "protobuf"):
        return HTTP_PROTOBUF
    if chosen == GRPC:
        return GRPC
    raise ValueError(f"unsupported OTLP protocol {chosen!r}; use 'http/protobuf' or 'grpc'")


def traces_url(endpoint: str) -> str:
    """A base URL or a full ``.../v1/traces`` URL, as the URL to POST spans to."""
    endpoint = endpoint.strip()
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"endpoint must be an http(s) URL such as http://localhost:4318, not {endpoint!r}"
        )
    path = parts.path.rstrip("/")
    if path.endswith(_TRACES_PATH):
        return endpoint
    return f"{parts.scheme}://{parts.netloc}{path}{_TRACES_PATH}"


def resolve_endpoint(endpoint: str | None, protocol: str) -> str | None:
    """Argument first, then the standard OTLP variables; None means no OTLP export."""
    if endpoint:
        return traces_url(endpoint) if protocol == HTTP_PROTOBUF else endpoint
    signal = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if signal:
        return signal
    base = _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return traces_url(base) if protocol == HTTP_PROTOBUF else base
    return None


def resolve_headers(headers: Mapping[str, str] | None, api_key: str | None) -> dict[str, str]:
    """Headers for the backend: argument (else OTEL_EXPORTER_OTLP_[TRACES_]HEADERS) plus api key."""
    if headers is not None:
        resolved = {str(k): str(v) for k, v in headers.items()}
    else:
        raw = _env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") or ""
        resolved = dict(parse_env_headers(raw, liberal=True))
    key = api_key or _env("PLYRA_API_KEY")
    if key and not any(name.lower() == "authorization" for name in resolved):
        resolved["authorization"] = f"Bearer {key}"
    return resolved


def otlp_exporter(
    endpoint: str,
    protocol: str,
    headers: dict[str, str],
    timeout: float | None,
    on_response: Callable[..., None] | None = None,
) -> SpanExporter:
    """The OpenTelemetry OTLP exporter for ``protocol``; ``on_response`` sees every HTTP answer
    (live spans learn from it whether the endpoint is a plyra collector)."""
    if protocol == GRPC:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError as missing:
            raise ImportError(
                "protocol='grpc' needs the grpc extra: pip install 'plyra-trace[grpc]'"
            ) from missing
        insecure = urlsplit(endpoint).scheme == "http"
        return GrpcExporter(
            endpoint=endpoint, headers=headers or None, timeout=timeout, insecure=insecure
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if os.environ.get(_SESSION_PROVIDER):  # the user brings the session
        return OTLPSpanExporter(endpoint=endpoint, headers=headers or None, timeout=timeout)
    session = _fork_safe_session()
    if on_response is not None:
        session.hooks["response"].append(on_response)
    return OTLPSpanExporter(
        endpoint=endpoint, headers=headers or None, timeout=timeout, session=session
    )


def _fork_safe_session() -> Any:
    """A requests session whose pooled connections a forked child (Celery, gunicorn workers)
    drops, so it never writes into the parent's keep-alive socket."""
    import requests

    session = requests.Session()
    if hasattr(os, "register_at_fork"):
        reference = weakref.ref(session)

        def forget() -> None:
            inherited = reference()
            if inherited is not None:
                try:
                    inherited.close()  # pools emptied; the session stays usable
                except Exception:
                    pass

        os.register_at_fork(after_in_child=forget)
    return session


def exporting_processor(
    exporter: SpanExporter,
    batch: bool,
    max_queue_size: int,
    schedule_delay_millis: int,
    health: ExportHealth | None = None,
) -> SpanProcessor:
    """A bounded batch processor (never blocks the caller) or, with ``batch=False``, a
    synchronous one for scripts and serverless functions; ``health`` counts what each does."""
    health = health if health is not None else ExportHealth()
    counted = _CountingExporter(exporter, health)
    if not batch:
        return SimpleSpanProcessor(counted)
    return _AccountedBatchProcessor(
        counted,
        health,
        max_queue_size=max_queue_size,
        max_export_batch_size=min(_MAX_EXPORT_BATCH, max_queue_size),
        schedule_delay_millis=schedule_delay_millis,
    )


def run_bounded(work: Callable[[], object], timeout: float, name: str) -> bool:
    """Run ``work`` on a daemon thread and wait at most ``timeout`` seconds for it: a flush to a
    slow collector (retrying as it asks) must not hold the caller longer than it allowed.
    True when ``work`` finished in time."""

    def contained() -> None:
        try:
            work()
        except Exception:
            _safety.log_once(name, f"plyra_trace: {name} failed; spans may be lost")

    thread = threading.Thread(target=contained, name=name, daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    return not thread.is_alive()


@dataclass(frozen=True, slots=True)
class ExportStatus:
    """Export health since ``init()``: every span given to the exporting processor was
    exported, dropped, failed, or is still queued (counted per destination)."""

    exported_spans: int
    dropped_spans: int
    failed_exports: int
    failed_export_calls: int
    queued_spans: int

    @property
    def undelivered(self) -> int:
        """Spans that did not reach the backend: dropped, failed, or still waiting."""
        return self.dropped_spans + self.failed_exports + self.queued_spans

    def __str__(self) -> str:
        return (
            f"{self.exported_spans} spans exported, {self.dropped_spans} dropped "
            f"(export queue full), {self.failed_exports} in {self.failed_export_calls} "
            f"failed export calls, {self.queued_spans} still queued"
        )


@dataclass(frozen=True, slots=True)
class FlushReport:
    """What a ``force_flush()`` or ``shutdown()`` could not deliver: spans dropped or failed
    since the previous report, spans still queued, and whether the timeout ran out.

    True when everything was delivered, so ``if handle.force_flush():`` reads as before.
    """

    dropped_spans: int
    failed_exports: int
    queued_spans: int
    timed_out: bool

    @property
    def undelivered(self) -> int:
        return self.dropped_spans + self.failed_exports + self.queued_spans

    def __bool__(self) -> bool:
        return not (self.undelivered or self.timed_out)


class ExportHealth:
    """Counts kept where spans are queued and exported, never inferred from log records.

    Drops are what the bounded queue evicted: spans put in, minus spans taken out for export,
    minus spans still in it. The SDK's own warning goes through a logger whose duplicate
    filter hides repeats, so counting log records undercounts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: list[_CountingQueue] = []
        self._exported = 0
        self._failed = 0
        self._failed_calls = 0
        self._reported = (0, 0)  # dropped, failed at the last FlushReport

    def _watch(self, queue: _CountingQueue) -> None:
        with self._lock:
            self._queues.append(queue)

    def _exported_batch(self, count: int, ok: bool) -> None:
        with self._lock:
            if ok:
                self._exported += count
            else:
                self._failed += count
                self._failed_calls += 1

    @property
    def dropped_spans(self) -> int:
        return sum(queue.evicted() for queue in self._queues)

    @property
    def failed_exports(self) -> int:
        return self._failed

    def status(self) -> ExportStatus:
        with self._lock:
            exported, failed, calls = self._exported, self._failed, self._failed_calls
        return ExportStatus(
            exported_spans=exported,
            dropped_spans=self.dropped_spans,
            failed_exports=failed,
            failed_export_calls=calls,
            queued_spans=sum(len(queue) for queue in self._queues),
        )

    def report(self, timed_out: bool) -> FlushReport:
        """What was not delivered since the previous report (and what is still queued)."""
        status = self.status()
        with self._lock:
            dropped_before, failed_before = self._reported
            self._reported = (status.dropped_spans, status.failed_exports)
        return FlushReport(
            dropped_spans=status.dropped_spans - dropped_before,
            failed_exports=status.failed_exports - failed_before,
            queued_spans=status.queued_spans,
            timed_out=timed_out,
        )

    def warn_if_incomplete(self, endpoint: str | None) -> None:
        """One warning line with the totals when anything was dropped, failed or left queued."""
        status = self.status()
        if status.undelivered:
            _safety.logger.warning(
                "plyra_trace: not every span reached %s: %s",
                endpoint or "the exporter",
                status,
            )

    def _forget_queue_after_fork(self) -> None:
        """A forked child starts its own books (the parent keeps exporting what it queued).
        The lock is replaced, not taken: another thread may have held it at the fork."""
        self._lock = threading.Lock()
        self._exported = self._failed = self._failed_calls = 0
        self._reported = (0, 0)


class _CountingQueue(collections.deque[Any]):
    """The batch processor's bounded deque, counting what goes in and what is taken out.

    ``appendleft`` on a full deque evicts the oldest span silently; ``evicted`` recovers the
    exact number. Puts are counted by the processor after ``emit`` (one cheap ``next`` per
    span), takes by the exporter per batch as it receives it (on the one export thread), so
    the deque's own methods stay in C.
    """

    def __init__(self, maxlen: int) -> None:
        super().__init__((), maxlen)
        self.put = itertools.count()
        self.taken = 0

    def clear(self) -> None:  # the SDK clears the inherited queue in a forked child
        super().clear()
        self.put = itertools.count()
        self.taken = 0

    def evicted(self) -> int:
        # next() on a count() is atomic, a thread-safe tally; its repr, "count(N)", reads it
        put = int(repr(self.put)[6:-1])
        return max(0, put - self.taken - len(self))


class _AccountedBatchProcessor(BatchSpanProcessor):
    """OpenTelemetry's ``BatchSpanProcessor`` with a queue that counts what it evicts."""

    def __init__(self, exporter: _CountingExporter, health: ExportHealth, **options: Any) -> None:
        super().__init__(exporter, **options)
        inner = getattr(self, "_batch_processor", None)
        current = getattr(inner, "_queue", None)
        self._counting: _CountingQueue | None = None
        self._said_full = False
        if isinstance(current, collections.deque) and current.maxlen:
            self._counting = _CountingQueue(current.maxlen)
            inner._queue = self._counting  # type: ignore[union-attr]
            exporter.queue = self._counting
            health._watch(self._counting)
        if hasattr(os, "register_at_fork"):
            reference = weakref.ref(health)

            def reset() -> None:
                forked = reference()
                if forked is not None:
                    forked._forget_queue_after_fork()

            os.register_at_fork(after_in_child=reset)

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        counting = self._counting
        if counting is not None and not self._said_full and len(counting) == counting.maxlen:
            self._say_full(counting.maxlen)
        self._batch_processor.emit(span)
        if counting is not None:
            next(counting.put)

    def _say_full(self, size: int) -> None:
        """Said here, once per ``init()``: the SDK's own warning goes through a duplicate filter
        that hides it when an earlier one was logged in the last 20 s."""
        self._said_full = True
        _safety.logger.warning(
            "plyra_trace: export queue full at %d spans, spans are dropped; raise "
            "max_queue_size or check the exporter (further drops are counted, not logged)",
            size,
        )


class _CountingExporter(SpanExporter):
    """Passes batches to the real exporter and counts spans of successful and failed calls."""

    def __init__(self, inner: SpanExporter, health: ExportHealth) -> None:
        self.inner = inner
        self.queue: _CountingQueue | None = None  # the batch queue feeding it, if any
        self._health = health

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.queue is not None:
            # Counted as the batch arrives: exact whenever no batch is being popped (a read
            # during the pops, microseconds, may overstate drops by that batch until here).
            self.queue.taken += len(spans)
        ok = False
        try:
            result = self.inner.export(spans)
            ok = result is SpanExportResult.SUCCESS
            return result
        finally:
            self._health._exported_batch(len(spans), ok)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _SayOnce(logging.Filter):
    """Lets the first matching record through, rewritten with a hint, and drops the rest
    (``ExportHealth`` counts what they are about)."""

    def __init__(self, hint: str, match: str = "", level: int = logging.WARNING) -> None:
        super().__init__("plyra")
        self._match = match
        self._level = level
        self._hint = hint
        self._said = False
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self._level or not str(record.msg).startswith(self._match):
            return True
        with self._lock:
            if self._said:
                return False
            self._said = True
        record.msg = (
            f"{record.getMessage()} ({self._hint}; further occurrences are counted, not logged)"
        )
        record.args = ()
        return True


class _Quiet(logging.Filter):
    """Drops the records that start with ``match``: something else reports what they say."""

    def __init__(self, match: str) -> None:
        super().__init__("plyra")
        self._match = match

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self._match)


class ExportLogGuard:
    """Installs and removes the say-once filters on the OpenTelemetry export loggers."""

    def __init__(self, endpoint: str | None) -> None:
        self._installed: list[tuple[logging.Logger, logging.Filter]] = []
        export_hint = f"plyra_trace: cannot export to {endpoint}; is the collector running?"
        retry_hint = f"plyra_trace: {endpoint} asked to retry later; retrying as it says"
        self._add(_QUEUE_LOGGER, _Quiet("Queue full"))  # the processor says it, and counts
        for name in _EXPORT_LOGGERS:
            self._add(name, _SayOnce(export_hint, level=logging.ERROR))
            self._add(name, _SayOnce(retry_hint, "Transient error"))

    def _add(self, name: str, log_filter: logging.Filter) -> None:
        logger = logging.getLogger(name)
        logger.addFilter(log_filter)
        self._installed.append((logger, log_filter))

    def remove(self) -> None:
        for logger, log_filter in self._installed:
            logger.removeFilter(log_filter)
        self._installed.clear()
