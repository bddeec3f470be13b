"""The tracer every plyra span is started with (``init()`` swaps it, decorators read it per call)
and the provider behind it (auto-instrumentors are turned on with it)."""

from __future__ import annotations

from opentelemetry import trace

from plyra_trace._version import VERSION

INSTRUMENTATION_NAME = "plyra_trace"

tracer: trace.Tracer = trace.get_tracer(INSTRUMENTATION_NAME, VERSION)
provider: trace.TracerProvider | None = None


def use_tracer(new: trace.Tracer | None, new_provider: trace.TracerProvider | None = None) -> None:
    """Start plyra spans with ``new`` from ``new_provider`` (None: back to the global provider)."""
    global tracer, provider
    tracer = new if new is not None else trace.get_tracer(INSTRUMENTATION_NAME, VERSION)
    provider = new_provider if new is not None else None
