"""Celery: a task sent by one agent and run by another sits in the same trace, handoff recorded.

Only Celery's signals are used (no patching). Publishing opens a PRODUCER span ``publish {task}``
and writes trace context and baggage (session, user, handoff with ``protocol=queue``) into the
message headers; the worker opens a CONSUMER span ``run {task}`` as the child of that span.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from plyra_trace import _capture, _runtime
from plyra_trace import _semconv as sc
from plyra_trace._context import scope_attributes, with_agent
from plyra_trace._propagation import (
    continuation,
    extract_context,
    outgoing_context,
    propagator,
    remote_parent,
)
from plyra_trace._safety import log_once

PROTOCOL: Final = "queue"
_HEADERS: Final = ("traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid")
_SENT_AT: Final = "plyra_sent_at"

_lock = threading.Lock()
_publishing: dict[str, Span] = {}
_running: dict[str, tuple[Span, object]] = {}
_connected: list[tuple[Any, Any]] = []
_agent_name: str | None = None


def _task_id(headers: Any, body: Any) -> str | None:
    if isinstance(headers, dict) and headers.get("id"):
        return str(headers["id"])
    if isinstance(body, dict) and body.get("id"):
        return str(body["id"])
    return None


def _before_publish(
    sender: Any = None, body: Any = None, headers: Any = None, routing_key: Any = None, **_: Any
) -> None:
    try:
        if not isinstance(headers, dict):
            return
        if "task" not in headers:  # protocol 1 keeps everything in the body
            log_once("celery-protocol-1", "plyra_trace: Celery protocol 1 is not traced; use 2")
            return
        name = str(headers.get("task") or sender)
        parent = otel_context.get_current()
        attributes: dict[str, Any] = {
            "messaging.system": "celery",
            "messaging.operation.type": "send",
            "messaging.destination.name": str(routing_key or "celery"),
            "messaging.message.id": str(headers.get("id") or ""),
            "celery.task.name": name,
            **(scope_attributes(parent) or {}),
        }
        span = _runtime.tracer.start_span(
            f"publish {name}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
        )
        outgoing = trace.set_span_in_context(span, outgoing_context(protocol=PROTOCOL, ctx=parent))
        carrier: dict[str, str] = {}
        propagator().inject(carrier, context=outgoing)
        headers.update(carrier)
        headers[_SENT_AT] = time.time()
        task_id = _task_id(headers, body)
        if task_id is None:
            span.end()
            return
        with _lock:
            _publishing[task_id] = span
    except Exception:
        log_once("celery-publish", "plyra_trace: could not trace a Celery publish")


def _after_publish(headers: Any = None, body: Any = None, **_: Any) -> None:
    task_id = _task_id(headers, body)
    with _lock:
        span = _publishing.pop(task_id, None) if task_id else None
    if span is not None:
        span.end()


def _carrier(request: Any) -> dict[str, Any]:
    carrier: dict[str, Any] = {}
    nested = getattr(request, "headers", None)
    if isinstance(nested, dict):
        carrier.update({k: v for k, v in nested.items() if k in _HEADERS or k == _SENT_AT})
    for key in (*_HEADERS, _SENT_AT):
        value = getattr(request, key, None)
        if value is not None:
            carrier[key] = value
    return carrier


def _prerun(
    task_id: Any = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    try:
        request = getattr(task, "request", None)
        carrier = _carrier(request)
        received = extract_context({k: v for k, v in carrier.items() if isinstance(v, str)})
        if remote_parent(received) is not None:
            parent = continuation(received, PROTOCOL, _agent_name)
        else:  # eager mode, or a sender without context: nest in what is current
            parent = otel_context.get_current()
        name = str(getattr(task, "name", "task"))
        attributes: dict[str, Any] = {
            "messaging.system": "celery",
            "messaging.operation.type": "process",
            "messaging.message.id": str(task_id),
            "celery.task.name": name,
            "celery.retries": int(getattr(request, "retries", 0) or 0),
            **(scope_attributes(parent) or {}),
        }
        delivery = getattr(request, "delivery_info", None) or {}
        queue = delivery.get("routing_key") or delivery.get("exchange")
        if queue:
            attributes["messaging.destination.name"] = str(queue)
        sent_at = carrier.get(_SENT_AT)
        if isinstance(sent_at, int | float):
            attributes["messaging.celery.queue_wait_ms"] = max(0.0, (time.time() - sent_at) * 1000)
        if _agent_name:
            attributes[sc.AGENT_NAME] = _agent_name
        if _capture.settings.enabled:
            arguments: dict[str, Any] = {"args": list(args or ()), **dict(kwargs or {})}
            value, mime = _capture.encode_input(arguments)
            attributes[sc.INPUT_VALUE], attributes[sc.INPUT_MIME_TYPE] = value, mime
        span = _runtime.tracer.start_span(
            f"run {name}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        ctx = trace.set_span_in_context(span, parent)
        if _agent_name:
            ctx = with_agent(_agent_name, ctx)
        token = otel_context.attach(ctx)
        with _lock:
            _running[str(task_id)] = (span, token)
    except Exception:
        log_once("celery-prerun", "plyra_trace: could not trace a Celery task; it runs untraced")


def _postrun(task_id: Any = None, retval: Any = None, state: Any = None, **_: Any) -> None:
    with _lock:
        entry = _running.pop(str(task_id), None)
    if entry is None:
        return
    span, token = entry
    try:
        otel_context.detach(token)  # type: ignore[arg-type]
    except Exception:
        pass
    try:
        if state:
            span.set_attribute("celery.state", str(state))
        if state == "SUCCESS" and _capture.settings.enabled and retval is not None:
            value, mime = _capture.encode_output(retval)
            span.set_attributes({sc.OUTPUT_VALUE: value, sc.OUTPUT_MIME_TYPE: mime})
    except Exception:
        log_once("celery-postrun", "plyra_trace: could not record a Celery task's result")
    finally:
        span.end()


def _failure(task_id: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    with _lock:
        entry = _running.get(str(task_id))
    if entry is None or exception is None:
        return
    span = entry[0]
    span.record_exception(exception)
    span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}"))


def _retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    with _lock:
        entry = _running.get(str(getattr(request, "id", "")))
    if entry is not None:
        entry[0].add_event("retry", {"reason": str(reason)[:512]})
        entry[0].set_attribute("celery.state", "RETRY")


def _revoked(request: Any = None, terminated: Any = None, expired: Any = None, **_: Any) -> None:
    with _lock:
        entry = _running.pop(str(getattr(request, "id", "")), None)
    if entry is not None:
        span = entry[0]
        span.set_attributes({"celery.state": "REVOKED", "celery.expired": bool(expired)})
        span.set_status(Status(StatusCode.ERROR, "revoked"))
        span.end()


def _flush_child(**_: Any) -> None:
    """Prefork children leave through os._exit: flush here, atexit never runs."""
    from plyra_trace._config import get_active

    handle = get_active()
    if handle is not None:
        handle.force_flush(timeout=5.0)


def instrument(app: Any = None, agent_name: str | None = None) -> None:
    """Trace publishes and task runs through Celery's signals (idempotent).

    ``agent_name`` is the agent this worker is; the run span records the handoff to it.
    """
    global _agent_name
    from celery import signals

    _agent_name = agent_name or _agent_name
    if _connected:
        return
    hooks = (
        (signals.before_task_publish, _before_publish),
        (signals.after_task_publish, _after_publish),
        (signals.task_prerun, _prerun),
        (signals.task_postrun, _postrun),
        (signals.task_failure, _failure),
        (signals.task_retry, _retry),
        (signals.task_revoked, _revoked),
        (signals.worker_process_shutdown, _flush_child),
        (signals.worker_shutdown, _flush_child),
    )
    for signal, handler in hooks:
        signal.connect(handler, weak=False)
        _connected.append((signal, handler))


def uninstrument() -> None:
    """Disconnect every signal handler ``instrument()`` connected."""
    global _agent_name
    while _connected:
        signal, handler = _connected.pop()
        signal.disconnect(handler)
    _agent_name = None
