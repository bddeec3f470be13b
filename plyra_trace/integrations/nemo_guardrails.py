"""NeMo Guardrails (with its OpenTelemetry tracing adapter) traces itself: each input or output
rail (``guardrails.rail``) becomes a plyra GUARD decision; a rail that stopped the conversation
blocked, any other allowed. Importing this module (the package does) adds the reader to
``AutoSpanProcessor``; nemoguardrails itself is never imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.sdk.trace import ReadableSpan, Span

from plyra_trace import _auto
from plyra_trace import _semconv as sc
from plyra_trace._guard import guard_attributes
from plyra_trace._processors import attributes_of, rebuilt
from plyra_trace.integrations.guardrails import text

__all__ = ["nemo_attributes"]

SCOPE: Final = "nemo_guardrails"
PROVIDER: Final = "nemo-guardrails"
_NEMO_RAIL: Final = "guardrails.rail"
_NEMO_REQUEST: Final = "guardrails.request"


def nemo_attributes(name: str, attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    """``guard.*`` for a NeMo Guardrails rail span; CHAIN for its request span; None otherwise."""
    if name == _NEMO_REQUEST:
        return dict(sc.kind_attributes(sc.SpanKind.CHAIN))
    if name != _NEMO_RAIL:
        return None
    rail = text(attributes.get("rail.name")) or "rail"
    stopped = attributes.get("rail.stop") is True
    decisions = attributes.get("rail.decisions")
    details: dict[str, Any] = {
        "rail": rail,
        "rail_type": text(attributes.get("rail.type")),
        "decisions": list(decisions) if isinstance(decisions, list | tuple) else [],
    }
    return {
        **sc.kind_attributes(sc.SpanKind.GUARD),
        sc.GUARD_NAME: rail,
        **guard_attributes(rail, "block" if stopped else "allow", stopped, 1.0, details, PROVIDER),
    }


class _Reader:
    """Rails become GUARD decisions and the request a CHAIN; other spans pass unchanged."""

    def started(self, span: Span, entry: _auto.OpenSpan) -> None:
        pass

    def finished(self, span: ReadableSpan, entry: _auto.OpenSpan) -> ReadableSpan:
        added = nemo_attributes(span.name, attributes_of(span))
        return span if added is None else rebuilt(span, {**attributes_of(span), **added})


_auto.add_scope_reader(SCOPE, _Reader())
