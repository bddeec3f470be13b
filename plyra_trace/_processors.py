"""Span processors that make up an init()'s pipeline.

``Router`` is what the TracerProvider holds; it forwards to the current ``Pipeline`` so a second
``init()`` swaps pipelines instead of exporting twice. The pipeline enriches spans from context
(session, user, received handoffs), lets transforming processors rewrite finished spans (compat),
and contains every failure so that ``span.end()`` never raises into user code.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, Status, StatusCode

from plyra_trace import _runtime
from plyra_trace import _semconv as sc
from plyra_trace._context import scope_attributes
from plyra_trace._propagation import take_pending_handoff
from plyra_trace._runtime import INSTRUMENTATION_NAME
from plyra_trace._safety import log_once


@runtime_checkable
class SpanTransform(Protocol):
    """A processor that may return a rewritten copy of a finished span (compat mappings)."""

    def transform(self, span: ReadableSpan) -> ReadableSpan: ...


def attributes_of(span: ReadableSpan) -> Mapping[str, Any]:
    """A span's attributes as a plain dict, for lookups that may miss.

    The SDK's attribute mapping answers a missing key by raising and catching a KeyError inside
    ``get``/``in``, which costs more than its public ``copy()`` (a C-level dict copy); most
    lookups on other libraries' spans miss.
    """
    attributes = span.attributes
    if not attributes:
        return _NO_ATTRIBUTES
    copy = getattr(attributes, "copy", None)
    copied = copy() if copy is not None else None
    return copied if isinstance(copied, dict) else dict(attributes)


_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})


def _receive_handoff(
    span: Span, parent_context: otel_context.Context | None, parent: SpanContext
) -> None:
    """Record the handoff a remote caller sent on the first span that continues it."""
    handoff = take_pending_handoff(parent_context, parent)
    if handoff:
        if sc.HANDOFF_TO not in handoff:
            receiver = (span.attributes or {}).get(sc.AGENT_NAME)
            if isinstance(receiver, str):
                handoff = {**handoff, sc.HANDOFF_TO: receiver}
        span.set_attributes(handoff)


def _does_work(processor: SpanProcessor, hook: str) -> bool:
    """Whether ``processor``'s ``hook`` can do anything: the SDK base class's hooks do nothing
    (unless the instance has its own), and a transform inside a pipeline hands its result to the
    pipeline, not to a next processor (``forwards`` False)."""
    inherited = getattr(type(processor), hook, None) is getattr(SpanProcessor, hook)
    if inherited and hook not in getattr(processor, "__dict__", {}):
        return False
    return bool(getattr(processor, "forwards", True))


ERROR_MESSAGE = "plyra.error.message"


def rebuilt(
    span: ReadableSpan,
    attributes: Mapping[str, Any] | None = None,
    status: Status | None = None,
) -> ReadableSpan:
    """A copy of a finished span with new attributes and/or status (spans are immutable once
    ended; transforming processors hand copies on, using only the public constructor)."""
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes if attributes is None else attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status if status is None else status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _with_error_message(span: ReadableSpan) -> ReadableSpan:
    """A failed span whose status lost its description (a library reset it after us) gets it
    back from ``plyra.error.message``."""
    message = (span.attributes or {}).get(ERROR_MESSAGE)
    if not isinstance(message, str):
        return span
    return rebuilt(span, status=Status(StatusCode.ERROR, message))


class Pipeline(SpanProcessor):
    """Enrichment, user processors and the export processor of one ``init()``.

    Hooks that cannot do anything (a processor's inherited no-op ``on_start``, a transform's
    ``on_end`` with nowhere to forward) are left out when the pipeline is built, so a span pays
    only for processors with work to do; enrichment runs inline.
    """

    def __init__(self, processors: Sequence[SpanProcessor], exporting: SpanProcessor) -> None:
        self._processors = list(processors)
        self._transforms = [p.transform for p in self._processors if isinstance(p, SpanTransform)]
        self._exporting = exporting
        every = (*self._processors, exporting)
        self._starts = [p.on_start for p in every if _does_work(p, "on_start")]
        self._ends = [p.on_end for p in every if _does_work(p, "on_end")]

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        try:
            scope = span.instrumentation_scope
            if scope is None or scope.name != INSTRUMENTATION_NAME:
                # Spans from plyra's own tracer are started with the scope attributes already
                # (the wrapper engine, SpanBuilder and integrations pass them), which spares
                # every decorated call a second, per-attribute validated write.
                attributes = scope_attributes(parent_context)
                if attributes:
                    _runtime.set_attributes(span, attributes)
            parent = span.parent
            if parent is not None and parent.is_remote:
                _receive_handoff(span, parent_context, parent)
            for start in self._starts:
                start(span, parent_context)
        except Exception:
            log_once("on_start", "plyra_trace: a span processor failed in on_start")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            status = span.status
            if status.status_code is StatusCode.ERROR and not status.description:
                span = _with_error_message(span)
            for transform in self._transforms:
                span = transform(span)
            for end in self._ends:
                end(span)
        except Exception:
            log_once("on_end", "plyra_trace: a span processor failed in on_end")

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        for processor in (*self._processors, self._exporting):
            try:
                shutdown = processor.shutdown
                if "timeout_millis" in shutdown.__code__.co_varnames:
                    shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
                else:
                    shutdown()
            except Exception:
                log_once("shutdown", "plyra_trace: a span processor failed to shut down")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush every processor, giving up after ``timeout_millis`` (never blocks longer)."""
        done = threading.Event()
        outcome = [True]

        def _flush() -> None:
            try:
                for processor in (*self._processors, self._exporting):
                    outcome[0] = bool(processor.force_flush(timeout_millis)) and outcome[0]
            except Exception:
                outcome[0] = False
            finally:
                done.set()

        threading.Thread(target=_flush, name="plyra-flush", daemon=True).start()
        return done.wait(timeout_millis / 1000) and outcome[0]


class Router(SpanProcessor):
    """The provider's processor: forwards to whichever pipeline ``init()`` installed last."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.on_end(span)

    def shutdown(self) -> None:
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            pipeline.shutdown(timeout_millis=5_000)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        pipeline = self.pipeline
        return pipeline.force_flush(timeout_millis) if pipeline is not None else True
