"""Plain kombu producers and consumers: the same headers Celery carries, by hand."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from plyra_trace._propagation import continue_trace, extract_context, inject_context

PROTOCOL = "queue"


def inject_headers(headers: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Write trace context, session, user and handoff (``protocol=queue``) into message headers."""
    inject_context(headers, protocol=PROTOCOL)
    return headers


def continue_from_message(message: Any, agent_name: str | None = None) -> Any:
    """A ``with`` block that continues the trace that sent ``message`` (a kombu Message or anything
    with ``headers``); malformed headers start a fresh trace."""
    return continue_trace(
        extract_context(getattr(message, "headers", None)), protocol=PROTOCOL, receiver=agent_name
    )
