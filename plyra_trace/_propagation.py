"""Carry trace context, session, user and handoff intent across process boundaries.

Every integration injects and extracts through this module; none parses headers itself. Carriers
of any shape are read through one normaliser, and hostile input never raises: it is ignored and a
fresh trace starts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from plyra_trace import _semconv as sc
from plyra_trace._context import SCOPE_KEY, Scope, current_agent, current_scope, with_scope
from plyra_trace._safety import log_once
from plyra_trace._w3c import W3CBaggage, W3CTraceContext

_MAX_HEADERS: Final = 256
_MAX_VALUE_BYTES: Final = 8192
_MAX_REASON_CHARS: Final = 512


_INTENT_KEY = otel_context.create_key("plyra.handoff_intent")
_PENDING_KEY = otel_context.create_key("plyra.pending_handoff")

# Ours first when baggage is written, so a caller's large baggage cannot crowd them out.
_OWN_BAGGAGE: Final = (sc.BAGGAGE_SESSION, sc.BAGGAGE_USER, *sc.BAGGAGE_HANDOFF)


def _tracecontext() -> TextMapPropagator:
    return W3CTraceContext()


def _baggage() -> TextMapPropagator:
    return W3CBaggage(first=_OWN_BAGGAGE)


_propagator: TextMapPropagator = CompositePropagator([_tracecontext(), _baggage()])


def configure(formats: Iterable[str] = ("tracecontext", "baggage")) -> None:
    """Choose the header formats written and read: any of tracecontext, baggage, b3, b3multi."""
    global _propagator
    chosen: list[TextMapPropagator] = []
    for name in formats:
        key = name.strip().lower()
        if key == "tracecontext":
            chosen.append(_tracecontext())
        elif key == "baggage":
            chosen.append(_baggage())
        elif key in ("b3", "b3single"):
            from opentelemetry.propagators.b3 import B3SingleFormat

            chosen.append(B3SingleFormat())
        elif key == "b3multi":
            from opentelemetry.propagators.b3 import B3MultiFormat

            chosen.append(B3MultiFormat())
        elif key and key != "none":
            raise ValueError(
                f"unknown propagator {name!r}; use tracecontext, baggage, b3 or b3multi"
            )
    _propagator = CompositePropagator(chosen)
    # Libraries that propagate through OpenTelemetry's global setting (FastAPI, mcp) use the same.
    propagate.set_global_textmap(_propagator)


def adopt_global() -> None:
    """Make the spec-exact formats the global ones too (FastAPI's and mcp's own tracing read
    it), unless the application installed propagators of its own."""
    current = propagate.get_global_textmap()
    if not isinstance(current, CompositePropagator):
        return
    parts = getattr(current, "_propagators", None)
    stock = {TraceContextTextMapPropagator, W3CBaggagePropagator}
    if parts and {type(part) for part in parts} <= stock:
        propagate.set_global_textmap(_propagator)


def propagator() -> TextMapPropagator:
    """The header formats in force (for integrations that inject into their own carriers)."""
    return _propagator


@dataclass(frozen=True, slots=True)
class HandoffIntent:
    """What the calling side says about the next outgoing call: to whom, and why."""

    to: str | None
    reason: str | None


@dataclass(slots=True)
class _PendingHandoff:
    """A handoff received from another process, written onto the first span that continues it."""

    attributes: dict[str, str]
    parent_span_id: int
    consumed: bool = False


@contextmanager
def handoff(to: str | None = None, reason: str | None = None) -> Iterator[None]:
    """State intent for calls made inside the block: they hand work to ``to`` for ``reason``."""
    intent = HandoffIntent(to=to, reason=_clip(reason))
    token = otel_context.attach(otel_context.set_value(_INTENT_KEY, intent))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_intent(ctx: otel_context.Context | None = None) -> HandoffIntent | None:
    intent = otel_context.get_value(_INTENT_KEY, ctx)
    return intent if isinstance(intent, HandoffIntent) else None


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= _MAX_REASON_CHARS else text[:_MAX_REASON_CHARS] + "…"


# --- inject ---------------------------------------------------------------------------------------


def outgoing_context(
    agent_name: str | None = None,
    handoff_reason: str | None = None,
    protocol: str = "http",
    handoff_to: str | None = None,
    ctx: otel_context.Context | None = None,
) -> otel_context.Context:
    """The context to inject for a call leaving this process: trace, scope, handoff baggage."""
    ctx = ctx if ctx is not None else otel_context.get_current()
    intent = current_intent(ctx)
    sender = agent_name or current_agent(ctx)
    reason = _clip(handoff_reason) or (intent.reason if intent else None)
    target = handoff_to or (intent.to if intent else None)
    ctx = with_scope(current_scope(ctx), ctx)
    entries = {
        sc.BAGGAGE_HANDOFF_FROM: sender,
        sc.BAGGAGE_HANDOFF_TO: target,
        sc.BAGGAGE_HANDOFF_REASON: reason,
        sc.BAGGAGE_HANDOFF_PROTOCOL: protocol if (sender or target or reason) else None,
    }
    return with_handoff_baggage(ctx, entries)


def with_handoff_baggage(
    ctx: otel_context.Context, entries: Mapping[str, str | None]
) -> otel_context.Context:
    """``ctx`` whose handoff baggage is exactly ``entries`` (keys of ``sc.BAGGAGE_HANDOFF``)."""
    for key in sc.BAGGAGE_HANDOFF:
        value = entries.get(key)
        ctx = (
            baggage.set_baggage(key, value, ctx)
            if value is not None
            else baggage.remove_baggage(key, ctx)
        )
    return ctx


def inject_context(
    carrier: MutableMapping[str, str] | list[tuple[str, str]],
    agent_name: str | None = None,
    handoff_reason: str | None = None,
    protocol: str = "http",
    *,
    handoff_to: str | None = None,
) -> MutableMapping[str, str] | list[tuple[str, str]]:
    """Write traceparent, tracestate and baggage (session, user, handoff) into ``carrier``.

    ``agent_name`` defaults to the agent running now and ``handoff_reason`` to the reason given
    to an enclosing ``handoff()``. Never raises: on failure the carrier is left as it was.
    """
    try:
        ctx = outgoing_context(agent_name, handoff_reason, protocol, handoff_to)
        if isinstance(carrier, list):
            pairs: dict[str, str] = {}
            _propagator.inject(pairs, context=ctx)
            carrier.extend(pairs.items())
        else:
            _propagator.inject(carrier, context=ctx)
    except Exception:
        log_once("inject", "plyra_trace: could not inject trace context; the call goes on untraced")
    return carrier


# --- extract --------------------------------------------------------------------------------------


def normalise_carrier(carrier: Any) -> dict[str, list[str]]:
    """The context headers of any header-like carrier: lowercase name -> its lines, in order.

    Accepts mappings (case-insensitive; WSGI ``HTTP_*`` keys too), lists of pairs (ASGI scope
    headers, gRPC metadata: a repeated name keeps every line), bytes keys and values, and
    multi-valued entries. Only the names the configured formats read are kept; oversized values
    and entries past the first 256 are dropped.
    """
    items: Iterable[Any]
    if carrier is None:
        return {}
    if isinstance(carrier, Mapping) or (hasattr(carrier, "items") and callable(carrier.items)):
        items = carrier.items()
    else:
        items = carrier
    fields = context_fields()
    headers: dict[str, list[str]] = {}
    for count, item in enumerate(items):
        if count >= _MAX_HEADERS:
            break
        try:
            key, value = item
        except (TypeError, ValueError):
            continue
        name = _text(key)
        if name is None:
            continue
        name = name.lower()
        if name.startswith("http_"):
            name = name[5:].replace("_", "-")
        if name not in fields:
            continue
        for line in value if isinstance(value, list | tuple) else (value,):
            text = _text(line)
            if text is not None and len(text) <= _MAX_VALUE_BYTES:
                headers.setdefault(name, []).append(text)
    return headers


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("latin-1")
        except Exception:
            return None
    return None


_fields_cache: tuple[TextMapPropagator | None, frozenset[str]] = (None, frozenset())


def context_fields() -> frozenset[str]:
    """The lowercase header names the configured formats read: a carrier with none of them
    carries no context, so a hot path may skip ``extract_context`` for it."""
    global _fields_cache
    propagator, fields = _fields_cache
    if propagator is not _propagator:
        fields = frozenset(name.lower() for name in _propagator.fields)
        _fields_cache = (_propagator, fields)
    return fields


def extract_context(carrier: Any) -> otel_context.Context:
    """The remote context in ``carrier``: a Context to hand to ``continue_trace``.

    Malformed, oversized or hostile input is ignored and yields an empty context (a new root).
    """
    try:
        return _propagator.extract(normalise_carrier(carrier), context=otel_context.Context())
    except Exception:
        log_once("extract", "plyra_trace: ignored malformed trace context in incoming headers")
        return otel_context.Context()


def remote_parent(ctx: otel_context.Context) -> trace.SpanContext | None:
    """The valid remote span context in an extracted context, if any."""
    span_context = trace.get_current_span(ctx).get_span_context()
    return span_context if span_context.is_valid else None


def handoff_attributes(
    ctx: otel_context.Context, default_protocol: str = "http", receiver: str | None = None
) -> dict[str, str]:
    """The ``agent.handoff.*`` attributes an extracted context describes (empty if none)."""
    entries = baggage.get_all(ctx)
    sender = entries.get(sc.BAGGAGE_HANDOFF_FROM)
    target = entries.get(sc.BAGGAGE_HANDOFF_TO) or receiver
    reason = entries.get(sc.BAGGAGE_HANDOFF_REASON)
    if not (sender or reason or entries.get(sc.BAGGAGE_HANDOFF_TO)):
        return {}
    if sender and sender == target:  # an agent queueing work for itself hands nothing off
        return {}
    attributes = {
        sc.HANDOFF_PROTOCOL: str(entries.get(sc.BAGGAGE_HANDOFF_PROTOCOL) or default_protocol)
    }
    if sender:
        attributes[sc.HANDOFF_FROM] = str(sender)
    if target:
        attributes[sc.HANDOFF_TO] = str(target)
    if reason:
        attributes[sc.HANDOFF_REASON] = str(_clip(str(reason)))
    return attributes


def scope_from_baggage(ctx: otel_context.Context) -> Scope | None:
    """The session and user that arrived in baggage, as a Scope (None when neither came)."""
    entries = baggage.get_all(ctx)
    session_id, user_id = entries.get(sc.BAGGAGE_SESSION), entries.get(sc.BAGGAGE_USER)
    if session_id is None and user_id is None:
        return None
    return Scope().replace(
        session_id=None if session_id is None else str(session_id),
        user_id=None if user_id is None else str(user_id),
    )


def without_handoff(ctx: otel_context.Context) -> otel_context.Context:
    """``ctx`` without the received handoff baggage: it describes one hop, not the next."""
    entries = baggage.get_all(ctx)
    for key in sc.BAGGAGE_HANDOFF:
        if key in entries:
            ctx = baggage.remove_baggage(key, ctx)
    return ctx


def continuation(
    ctx: otel_context.Context, protocol: str = "http", receiver: str | None = None
) -> otel_context.Context:
    """The context to run received work in: remote parent, scope from baggage, pending handoff.

    The first span started in it becomes a child of the remote parent and carries the handoff
    attributes; the handoff entries leave baggage so they do not leak into the next hop.
    """
    attributes = handoff_attributes(ctx, protocol, receiver)
    result = without_handoff(ctx)
    scope = scope_from_baggage(ctx)
    if scope is not None:
        result = otel_context.set_value(SCOPE_KEY, scope, result)
    parent = remote_parent(ctx)
    if attributes:
        pending = _PendingHandoff(attributes, parent.span_id if parent else 0)
        result = otel_context.set_value(_PENDING_KEY, pending, result)
    return result


@contextmanager
def continue_trace(
    ctx: otel_context.Context | Mapping[str, Any] | None,
    *,
    protocol: str = "http",
    receiver: str | None = None,
) -> Iterator[None]:
    """Run the block as the continuation of a remote caller's trace.

    Takes what ``extract_context`` returned (or, for convenience, the headers themselves). The first
    span inside is a child of the remote span and records ``agent.handoff.from/to/reason/protocol``
    (``protocol`` is the default when the caller did not say; ``receiver`` the default ``to``).
    """
    if ctx is None:
        ctx = otel_context.Context()
    elif not isinstance(ctx, otel_context.Context):
        ctx = extract_context(ctx)
    try:
        received = continuation(ctx, protocol, receiver)
    except Exception:
        log_once("continue", "plyra_trace: could not continue the remote trace; starting a new one")
        received = otel_context.Context()
    token = otel_context.attach(received)
    try:
        yield
    finally:
        otel_context.detach(token)


def take_pending_handoff(
    parent_context: otel_context.Context | None, parent: trace.SpanContext | None
) -> dict[str, str] | None:
    """Handoff attributes for a span starting under ``parent``, once per received handoff."""
    pending = otel_context.get_value(_PENDING_KEY, parent_context)
    if not isinstance(pending, _PendingHandoff) or pending.consumed:
        return None
    if parent is not None and pending.parent_span_id and parent.span_id != pending.parent_span_id:
        return None
    with _consume_lock:
        if pending.consumed:
            return None
        pending.consumed = True
    return pending.attributes


_consume_lock = threading.Lock()
