"""Guard decisions: which stored spans are policy decisions, and how the Guards view buckets them.

A decision is a GUARD span that says what it decided (``guard.action``), written by ``@guard``,
``SpanBuilder.set_guard`` or an integration (plyra-guard, guardrails-ai, NeMo Guardrails). Pure
functions; the SQL lives in storage.
"""

from __future__ import annotations

from typing import Any, Final

from plyra_trace import _semconv as sc
from plyra_trace.collector.model import Row, SpanRecord

_LIMIT: Final = 200  # policy and action are labels, not documents
_BUCKETS: Final = 60  # points in a Guards time series


def _label(value: Any) -> str | None:
    return value[:_LIMIT] if isinstance(value, str) and value else None


def decision(record: SpanRecord) -> Row | None:
    """The guard decision a span records, or None (no ``guard.action``, or not a GUARD span)."""
    attributes = record.attributes
    action = _label(attributes.get(sc.GUARD_ACTION))
    if action is None or record.kind != sc.SpanKind.GUARD.value:
        return None
    policy = (
        _label(attributes.get(sc.GUARD_POLICY))
        or _label(attributes.get(sc.GUARD_NAME))
        or record.name[:_LIMIT]
    )
    return {
        "trace_id": record.trace_id,
        "span_id": record.span_id,
        "start_ns": record.start_ns,
        "duration_ns": record.duration_ns,
        "project": record.project,
        "service": record.service,
        "policy": policy,
        "action": action.lower(),
        "provider": _label(attributes.get(sc.GUARD_PROVIDER)),
    }


def bucket_ns(since_ns: int, until_ns: int) -> int:
    """A round bucket width giving at most about 60 points between ``since`` and ``until``."""
    span = max(1, until_ns - since_ns)
    for width in (
        10**9,
        10 * 10**9,
        60 * 10**9,
        5 * 60 * 10**9,
        15 * 60 * 10**9,
        3600 * 10**9,
        6 * 3600 * 10**9,
        86400 * 10**9,
    ):
        if span / width <= _BUCKETS:
            return width
    return 7 * 86400 * 10**9
