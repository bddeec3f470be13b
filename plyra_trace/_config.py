"""``init()``: one call that sets up the provider, sampling, capture policy and export.

The TracerProvider is created once per process (or borrowed from the application when it set
its own); each ``init()`` installs a fresh pipeline behind a router, so calling it again
reconfigures cleanly instead of exporting twice, and ``init()`` after ``shutdown()`` works.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from plyra_trace import _capture, _export, _instrument, _propagation, _runtime
from plyra_trace._auto import AutoSpanProcessor
from plyra_trace._capture import Redactor
from plyra_trace._console import ConsoleTreeProcessor
from plyra_trace._llm import warm_prices
from plyra_trace._processors import Pipeline, Router
from plyra_trace._safety import logger
from plyra_trace._terminate import flush_on_terminate
from plyra_trace._version import VERSION


class _AdjustableSampler(Sampler):
    """Parent-based ratio sampling whose ratio a later ``init()`` may change."""

    def __init__(self, rate: float) -> None:
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        root = ALWAYS_ON if rate >= 1.0 else TraceIdRatioBased(rate)  # no ratio test when all
        self._delegate = ParentBased(root)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"plyra({self._delegate.get_description()})"  # type: ignore[no-untyped-call]


class _Process:
    """What this process has set up: one router, one sampler, the provider plyra spans use."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.router = Router()
        self.sampler = _AdjustableSampler(1.0)
        self.provider: TracerProvider | None = None
        self.borrowed = False
        self.active: PlyraTrace | None = None


_process = _Process()


class PlyraTrace:
    """The handle ``init()`` returns: flush and shut down what it set up."""

    def __init__(
        self,
        project: str,
        service_name: str,
        endpoint: str | None,
        protocol: str | None,
        pipeline: Pipeline,
        health: _export.ExportHealth,
        log_guard: _export.ExportLogGuard,
        provider: TracerProvider,
    ) -> None:
        self.project = project
        self.service_name = service_name
        self.endpoint = endpoint
        self.protocol = protocol
        self.provider = provider
        self._pipeline = pipeline
        self._health = health
        self._log_guard = log_guard
        self._closed = False

    @property
    def dropped_spans(self) -> int:
        """Spans dropped because the export queue was full."""
        return self._health.dropped_spans

    @property
    def failed_exports(self) -> int:
        """Spans in export calls that failed (endpoint down, rejected, timed out)."""
        return self._health.failed_exports

    @property
    def failed_export_calls(self) -> int:
        """Export calls that failed (each may carry up to 512 spans)."""
        return self._health.status().failed_export_calls

    def status(self) -> _export.ExportStatus:
        """Spans exported, dropped, failed (and failed calls) and still queued so far."""
        return self._health.status()

    @property
    def is_shutdown(self) -> bool:
        return self._closed

    def force_flush(self, timeout: float = 5.0) -> _export.FlushReport:
        """Export everything finished so far, within about ``timeout`` seconds. The report
        says what was not delivered (dropped or failed since the last report, still queued)
        and is falsy when anything was not, or the timeout ran out."""
        if self._closed:
            return self._health.report(timed_out=True)
        done = self._pipeline.force_flush(int(timeout * 1000))  # bounded by the timeout
        return self._health.report(timed_out=not done)

    def shutdown(self, timeout: float = 5.0) -> _export.FlushReport:
        """Flush and stop exporting; returns within about ``timeout`` seconds even if the backend
        is down, with what could not be delivered (a warning with the totals says it too).
        Spans started afterwards are not exported until the next ``init()``."""
        with _process.lock:
            if self._closed:
                return self._health.report(timed_out=False)
            self._closed = True
            if _process.router.pipeline is self._pipeline:
                _process.router.pipeline = None
            if _process.active is self:
                _process.active = None
        flushed = self._pipeline.force_flush(int(timeout * 1000 * 0.8))
        stopped = _export.run_bounded(
            lambda: self._pipeline.shutdown(timeout_millis=int(timeout * 1000 * 0.2) + 1),
            timeout * 0.2 + 0.05,
            "plyra-shutdown",
        )
        self._log_guard.remove()
        self._health.warn_if_incomplete(self.endpoint)
        return self._health.report(timed_out=not (flushed and stopped))

    def __enter__(self) -> PlyraTrace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        target = self.endpoint or "console"
        return f"<PlyraTrace project={self.project!r} service={self.service_name!r} -> {target}>"


def _resource(project: str, service_name: str | None, extra: Mapping[str, Any] | None) -> Resource:
    attributes: dict[str, Any] = {
        "service.name": service_name or project,
        "openinference.project.name": project,
        "plyra.project": project,
        "telemetry.distro.name": "plyra-trace",
        "telemetry.distro.version": VERSION,
    }
    attributes.update(extra or {})
    return Resource.create(attributes)


def _provider_for(resource: Resource) -> TracerProvider:
    """The provider plyra spans use: the application's, ours, or a fresh one for a new resource."""
    current = trace.get_tracer_provider()
    if _process.provider is None:
        if isinstance(current, TracerProvider):
            current.add_span_processor(_process.router)
            _process.provider, _process.borrowed = current, True
            logger.info("plyra_trace: attached to the application's TracerProvider")
            return current
        provider = TracerProvider(resource=resource, sampler=_process.sampler)
        provider.add_span_processor(_process.router)
        trace.set_tracer_provider(provider)
        _process.provider = provider
        return provider
    if _process.borrowed or _process.provider.resource == resource:
        return _process.provider
    provider = TracerProvider(resource=resource, sampler=_process.sampler)
    provider.add_span_processor(_process.router)
    _process.provider = provider
    return provider


def init(
    project: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    api_key: str | None = None,
    span_processors: Sequence[SpanProcessor] | None = None,
    sample_rate: float = 1.0,
    batch: bool = True,
    capture_io: bool = True,
    *,
    service_name: str | None = None,
    exporter: SpanExporter | None = None,
    console: bool | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    max_io_chars: int = _capture.DEFAULT_MAX_CHARS,
    redact_keys: Iterable[str] | None = None,
    redactor: Redactor | None = None,
    propagators: Iterable[str] | None = None,
    timeout: float | None = None,
    max_queue_size: int = _export.DEFAULT_MAX_QUEUE_SIZE,
    schedule_delay_millis: int = 500,
    instrument: bool | Sequence[str] | None = None,
    flush_on_sigterm: bool = True,
    live: bool | None = None,
    live_delay: float = 1.0,
    live_heartbeat: float = 5.0,
) -> PlyraTrace:
    """Set up tracing for ``project`` and return a handle to flush and shut it down.

    With no ``endpoint`` (and no ``OTEL_EXPORTER_OTLP_*ENDPOINT`` set) each trace is printed to
    stderr as a tree. ``endpoint`` takes a base URL (``http://localhost:4318``) or a full
    ``.../v1/traces`` URL. Explicit arguments win over the standard ``OTEL_*`` variables.
    ``instrument`` turns on auto-instrumentation: True for every installed target, or names
    (``["openai", "anthropic", "langchain", "crewai", "ag2"]``). ``flush_on_sigterm`` exports
    queued spans when SIGTERM arrives, where the application has no SIGTERM handler of its own.
    ``live`` announces spans still open after ``live_delay`` seconds (re-sent every
    ``live_heartbeat`` seconds) to a plyra collector: None (default) only when the endpoint
    answers as one, True always (OTLP/HTTP), False never. Other backends get finished spans only.
    """
    if not 0.0 <= sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be between 0 and 1, not {sample_rate!r}")
    if max_queue_size < 1:
        raise ValueError("max_queue_size must be at least 1")
    project = project or os.environ.get("OTEL_SERVICE_NAME") or "default"
    service = service_name or os.environ.get("OTEL_SERVICE_NAME") or project
    resolved_protocol = _export.resolve_protocol(protocol)
    url = _export.resolve_endpoint(endpoint, resolved_protocol)

    exporters: list[SpanExporter] = []
    if exporter is not None:
        exporters.append(exporter)
    live_spans = None
    if url is not None:
        from plyra_trace._live import live_processor  # protobuf encoding: only when exporting

        sent_headers = _export.resolve_headers(headers, api_key)
        live_spans = live_processor(
            url, resolved_protocol, sent_headers, live, live_delay, live_heartbeat, timeout
        )
        observe = live_spans.observe if live_spans is not None else None
        exporters.append(
            _export.otlp_exporter(url, resolved_protocol, sent_headers, timeout, observe)
        )

    _capture.settings.configure(capture_io, max_io_chars, redact_keys, redactor)
    if propagators is not None:
        _propagation.configure(propagators)
    elif os.environ.get("OTEL_PROPAGATORS"):
        _propagation.configure(os.environ["OTEL_PROPAGATORS"].split(","))
    else:
        _propagation.adopt_global()

    health = _export.ExportHealth()
    processors = [
        _export.exporting_processor(e, batch, max_queue_size, schedule_delay_millis, health)
        for e in exporters
    ]
    if console or (console is None and not exporters):
        processors.append(ConsoleTreeProcessor())
    if not processors:
        processors.append(SpanProcessor())  # nowhere to export: spans are still made and dropped
    exporting = processors[0] if len(processors) == 1 else _Fanout(processors)
    from plyra_trace.compat import OpenInferenceSpanProcessor

    pipeline = Pipeline(
        [
            OpenInferenceSpanProcessor(),
            AutoSpanProcessor(),
            *(span_processors or ()),
            *((live_spans,) if live_spans is not None else ()),
        ],
        exporting,
    )

    with _process.lock:
        previous = _process.active
        if previous is not None:
            logger.warning(
                "plyra_trace.init() called again: the previous configuration is shut down "
                "and replaced (spans are not exported twice)"
            )
        provider = _provider_for(_resource(project, service_name or service, resource_attributes))
        if _process.borrowed and sample_rate != 1.0:
            logger.warning(
                "plyra_trace: sample_rate is ignored; the application's TracerProvider samples"
            )
        _process.sampler.set_rate(sample_rate)
        handle = PlyraTrace(
            project,
            service,
            url,
            resolved_protocol if url else None,
            pipeline,
            health,
            _export.ExportLogGuard(url),
            provider,
        )
        _process.router.pipeline = pipeline
        _process.active = handle
        _runtime.use_tracer(provider.get_tracer(_runtime.INSTRUMENTATION_NAME, VERSION), provider)
    if previous is not None:
        previous._pipeline.shutdown(timeout_millis=2_000)
        previous._closed = True
        previous._log_guard.remove()
        previous._health.warn_if_incomplete(previous.endpoint)
    warm_prices()
    if flush_on_sigterm:
        flush_on_terminate(flush_active)
    if not logging.getLogger("plyra_trace").handlers and not logging.getLogger().handlers:
        logging.getLogger("plyra_trace").addHandler(logging.StreamHandler())
    if instrument:
        _instrument.configure(instrument)
    return handle


def get_active() -> PlyraTrace | None:
    """The handle of the ``init()`` in force, if any."""
    return _process.active


def flush_active(timeout: float) -> bool:
    """Export what the ``init()`` in force has queued, within ``timeout`` seconds (process exits:
    SIGTERM, ASGI lifespan shutdown, Celery worker shutdown). False if nothing was flushed."""
    handle = _process.active
    return bool(handle.force_flush(timeout)) if handle is not None else False


def status() -> _export.ExportStatus | None:
    """Export health of the ``init()`` in force (None before ``init()``): spans exported,
    dropped by the full queue, lost in failed export calls, and still queued."""
    handle = _process.active
    return handle.status() if handle is not None else None


class _Fanout(SpanProcessor):
    """Several exporting processors as one (console and OTLP together, say)."""

    def __init__(self, processors: Sequence[SpanProcessor]) -> None:
        self._processors = list(processors)

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        for processor in self._processors:
            processor.on_start(span, parent_context)

    def on_end(self, span: Any) -> None:
        for processor in self._processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return all(processor.force_flush(timeout_millis) for processor in self._processors)
