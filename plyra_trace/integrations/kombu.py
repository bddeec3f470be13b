"""Plain kombu producers and consumers: the same headers Celery carries, by hand."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context

from plyra_trace._propagation import continuation, extract_context, inject_context
from plyra_trace._safety import log_once

PROTOCOL = "queue"


def inject_headers(headers: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Write trace context, session, user and handoff (``protocol=queue``) into message headers."""
    inject_context(headers, protocol=PROTOCOL)
    return headers


@contextmanager
def continue_from_message(message: Any, agent_name: str | None = None) -> Iterator[None]:
    """Run the block as the continuation of the trace that sent ``message`` (a kombu Message or
    anything with ``headers``); malformed headers start a fresh trace."""
    try:
        received = continuation(
            extract_context(getattr(message, "headers", None)), PROTOCOL, agent_name
        )
    except Exception:
        log_once("kombu", "plyra_trace: could not continue a message's trace")
        received = otel_context.Context()
    token = otel_context.attach(received)
    try:
        yield
    finally:
        otel_context.detach(token)
