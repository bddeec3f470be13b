"""The tracer every plyra span is started with (``init()`` swaps it, decorators read it per call)
and the provider behind it (auto-instrumentors are turned on with it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def set_attributes(span: trace.Span, attributes: Mapping[str, Any]) -> None:
    """Add ``attributes`` to a started span, the cheaper way for their number.

    The SDK validates a mapping as a whole before its values (abstract-class checks, a cleaned
    copy), which costs about one attribute's write: for one or two attributes writing each is
    cheaper (measured: ~1.0 and ~0.5 us less CPU per call), from three on the mapping is.
    """
    if len(attributes) > 2:
        span.set_attributes(attributes)
        return
    for key, value in attributes.items():
        span.set_attribute(key, value)
