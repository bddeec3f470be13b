"""Plain kombu producers and consumers: the same headers Celery carries, by hand."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from plyra_trace._propagation import continue_trace, extract_context, inject_context
from plyra_trace._safety import log_once

__all__ = ["continue_from_message", "inject_headers"]

PROTOCOL = "queue"


def inject_headers(headers: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Write trace context, session, user and handoff (``protocol=queue``) into message headers,
    in place; returns ``headers``. Never raises: on failure they are left as they were."""
    inject_context(headers, protocol=PROTOCOL)
    return headers


def continue_from_message(message: Any, agent_name: str | None = None) -> Any:
    """A ``with`` block that continues the trace that sent ``message`` (a kombu Message or anything
    with ``headers``); ``agent_name`` is the default handoff target. Malformed or unreadable
    headers start a fresh trace; this never raises."""
    try:
        headers = getattr(message, "headers", None)
    except Exception:
        log_once("kombu-headers", "plyra_trace: could not read a message's headers; new trace")
        headers = None
    return continue_trace(extract_context(headers), protocol=PROTOCOL, receiver=agent_name)
