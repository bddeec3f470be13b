"""The tracer every plyra span is started with; ``init()`` swaps it, decorators read it per call."""

from __future__ import annotations

from opentelemetry import trace

from plyra_trace._version import VERSION

INSTRUMENTATION_NAME = "plyra_trace"

tracer: trace.Tracer = trace.get_tracer(INSTRUMENTATION_NAME, VERSION)


def use_tracer(new: trace.Tracer | None) -> None:
    """Start plyra spans with ``new`` (None: back to the global provider's tracer)."""
    global tracer
    tracer = new if new is not None else trace.get_tracer(INSTRUMENTATION_NAME, VERSION)
