"""Celery: a task sent by one agent and run by another sits in the same trace, handoff recorded.

Only Celery's signals are used (no patching). Publishing opens a PRODUCER span ``publish {task}``
and writes trace context and baggage (session, user, handoff with ``protocol=queue``) into the
message headers; the worker opens a CONSUMER span ``run {task}`` as the child of that span.

When a prefork child dies with its task (hard time limit, worker lost, revoke with terminate) its
run span dies with it; the worker's main process, which is told, records a ``run {task}`` span in
its place, child of the same publish span, with the failure as its status.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from plyra_trace import _capture, _runtime
from plyra_trace import _semconv as sc
from plyra_trace._context import scope_attributes, with_agent
from plyra_trace._propagation import (
    continuation,
    extract_context,
    outgoing_context,
    propagator,
    remote_parent,
    with_handoff_baggage,
)
from plyra_trace._safety import log_once

__all__ = ["instrument", "uninstrument"]

PROTOCOL: Final = "queue"
_HEADERS: Final = ("traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid")
_SENT_AT: Final = "plyra_sent_at"
_CARRIED: Final = (*_HEADERS, _SENT_AT)
_RUN_KEY: Final = otel_context.create_key("plyra.celery_run")


@dataclass(slots=True)
class _Run:
    """A task execution in this process: its span, the context it attached, what it received."""

    span: Span
    task_id: str
    handoff: dict[str, str] = field(default_factory=dict)  # handoff baggage the message carried
    token: object = None


@dataclass(slots=True)
class _Outgoing:
    """The span-independent headers (baggage) last written for ``parent`` by ``propagator``."""

    parent: otel_context.Context
    propagator: TextMapPropagator
    headers: dict[str, str]


_EMPTY: Final = otel_context.Context()
_lock = threading.Lock()
# Publishes between before_ and after_task_publish, by thread: both signals fire in the thread
# that publishes, with nothing published in between. One left over means the publish raised.
_publishing: dict[int, Span] = {}
# Per thread, the baggage headers of the last context published from: a loop of apply_async()
# calls shares one context, and encoding baggage costs as much as starting the span.
_outgoing = threading.local()
# Runs by their task's request (a Context pushed per execution): retries of one task id may run
# concurrently in a thread pool, so the id alone is not a key.
_runs: weakref.WeakKeyDictionary[Any, _Run] = weakref.WeakKeyDictionary()
# Requests the worker's main process received, by task id: a hard time limit reports only the id.
_received: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
# Task ids whose lost run this process recorded (Celery reports a hard time limit twice).
_recorded: dict[str, None] = {}
_RECORDED_MAX: Final = 1024
_connected: list[tuple[Any, Any]] = []
_agent_name: str | None = None
_pool_child = False  # a prefork child: its main process reports the runs it dies with


# --- publish --------------------------------------------------------------------------------------


def _end_unfinished_publish(span: Span) -> None:
    """A publish whose after_task_publish never came raised in the broker client."""
    span.set_status(Status(StatusCode.ERROR, "publish failed: the message was not sent"))
    span.end()


def _retry_handoff(ctx: otel_context.Context, handoff: Mapping[str, str]) -> otel_context.Context:
    """A retry re-sends the same handoff: the baggage the first attempt received, not a new one
    from the worker's agent to itself."""
    return with_handoff_baggage(ctx, handoff)


def _context_headers(
    parent: otel_context.Context, task_id: str, current: TextMapPropagator
) -> dict[str, str]:
    """The headers that do not depend on the publish span: baggage with session, user, handoff."""
    run = otel_context.get_value(_RUN_KEY, parent)
    retry = isinstance(run, _Run) and run.task_id == task_id  # self.retry(): same id, again
    cached: _Outgoing | None = getattr(_outgoing, "last", None)
    if not retry and cached and cached.parent is parent and cached.propagator is current:
        return cached.headers
    outgoing = outgoing_context(protocol=PROTOCOL, ctx=parent)
    if retry and isinstance(run, _Run):
        outgoing = _retry_handoff(outgoing, run.handoff)
    headers: dict[str, str] = {}
    current.inject(headers, context=trace.set_span_in_context(INVALID_SPAN, outgoing))
    if not retry:
        _outgoing.last = _Outgoing(parent, current, headers)
    return headers


def _before_publish(
    sender: Any = None, body: Any = None, headers: Any = None, routing_key: Any = None, **_: Any
) -> None:
    try:
        if not isinstance(headers, dict):
            return
        if "task" not in headers:  # protocol 1 keeps everything in the body
            log_once(
                "celery-protocol-1",
                "plyra_trace: Celery task protocol 1 messages are not traced; "
                "set task_protocol=2 (the default)",
                exc_info=False,
            )
            return
        thread = threading.get_ident()
        stale = _publishing.pop(thread, None)
        if stale is not None:
            _end_unfinished_publish(stale)
        name = str(headers.get("task") or sender)
        task_id = str(headers.get("id") or "")
        parent = otel_context.get_current()
        attributes: dict[str, Any] = {
            "messaging.system": "celery",
            "messaging.operation.type": "send",
            "messaging.destination.name": str(routing_key or "celery"),
            "messaging.message.id": task_id,
            "celery.task.name": name,
        }
        retries = headers.get("retries")
        if retries:
            attributes["celery.retries"] = int(retries)
        scope = scope_attributes(parent)
        if scope:
            attributes.update(scope)
        span = _runtime.tracer.start_span(
            f"publish {name}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
        )
        current = propagator()
        for key in _HEADERS:  # a retry copies the first message's headers: drop stale context
            headers.pop(key, None)
        # the span's own headers (traceparent, tracestate, b3), then the cached baggage
        current.inject(headers, context=trace.set_span_in_context(span, _EMPTY))
        headers.update(_context_headers(parent, task_id, current))
        headers[_SENT_AT] = time.time()
        _publishing[thread] = span
    except Exception:
        log_once("celery-publish", "plyra_trace: could not trace a Celery publish")


def _after_publish(**_: Any) -> None:
    span = _publishing.pop(threading.get_ident(), None)
    if span is not None:
        span.end()  # the SDK pipeline contains processor failures: end() does not raise


# --- run ------------------------------------------------------------------------------------------


def _carrier(source: Any) -> dict[str, Any]:
    """The propagation headers of a task request: a task's ``request`` (Context), a worker
    ``Request`` or its dict. Celery exposes custom headers at the top level and in ``headers``."""
    if source is None:
        return {}
    top = source if isinstance(source, Mapping) else getattr(source, "request_dict", None)
    if isinstance(top, Mapping):
        nested = top.get("headers")
        found = {key: top.get(key) for key in _CARRIED}
    else:
        nested = getattr(source, "headers", None)
        found = {key: getattr(source, key, None) for key in _CARRIED}
    carrier: dict[str, Any] = {}
    if isinstance(nested, Mapping):
        carrier.update((key, nested[key]) for key in _CARRIED if key in nested)
    carrier.update((key, value) for key, value in found.items() if value is not None)
    return carrier


def _field(source: Any, key: str) -> Any:
    """``key`` of a task's ``request`` (Context), a worker ``Request`` or a request dict."""
    if isinstance(source, Mapping):
        return source.get(key)
    fields = getattr(source, "request_dict", None)
    if isinstance(fields, Mapping) and key in fields:
        return fields[key]
    return getattr(source, key, None)


def _context_for(
    carrier: Mapping[str, Any], fallback: otel_context.Context | None = None
) -> tuple[otel_context.Context, dict[str, str]]:
    """The parent context of a run and the handoff baggage the message carried; without a
    remote parent (eager mode, a sender without context) ``fallback``, by default the current."""
    received = extract_context(carrier)
    if remote_parent(received) is None:
        return (otel_context.get_current() if fallback is None else fallback), {}
    entries = baggage.get_all(received)
    handoff = {k: str(entries[k]) for k in sc.BAGGAGE_HANDOFF if entries.get(k) is not None}
    return continuation(received, PROTOCOL, _agent_name), handoff


def _run_attributes(
    name: str,
    task_id: str,
    request: Any,
    carrier: Mapping[str, Any],
    parent: otel_context.Context,
    started: float | None = None,
) -> dict[str, Any]:
    """What a run span says: messaging attributes, task, retries, queue, wait, agent, scope."""
    attributes: dict[str, Any] = {
        "messaging.system": "celery",
        "messaging.operation.type": "process",
        "messaging.message.id": task_id,
        "celery.task.name": name,
    }
    retries = _field(request, "retries")
    attributes["celery.retries"] = retries if isinstance(retries, int) else 0
    delivery = _field(request, "delivery_info")
    if isinstance(delivery, Mapping):
        queue = delivery.get("routing_key") or delivery.get("exchange")
        if queue:
            attributes["messaging.destination.name"] = str(queue)
    sent_at = carrier.get(_SENT_AT)
    if isinstance(sent_at, int | float) and not isinstance(sent_at, bool):
        waited = (started if started is not None else time.time()) - sent_at
        attributes["messaging.celery.queue_wait_ms"] = max(0.0, waited * 1000)
    if _agent_name:
        attributes[sc.AGENT_NAME] = _agent_name
    scope = scope_attributes(parent)
    if scope:
        attributes.update(scope)
    return attributes


def _prerun(
    task_id: Any = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    request = getattr(task, "request", None)
    if request is None:
        return
    span: Span | None = None
    try:
        carrier = _carrier(request)
        parent, handoff = _context_for(carrier)
        name = str(getattr(task, "name", "task"))
        attributes = _run_attributes(name, str(task_id), request, carrier, parent)
        if _capture.settings.enabled:
            arguments: dict[str, Any] = {"args": list(args or ()), **dict(kwargs or {})}
            value, mime = _capture.encode_input(arguments)
            attributes[sc.INPUT_VALUE], attributes[sc.INPUT_MIME_TYPE] = value, mime
        span = _runtime.tracer.start_span(
            f"run {name}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        run = _Run(span, str(task_id), handoff)
        ctx = trace.set_span_in_context(span, parent)
        if _agent_name:
            ctx = with_agent(_agent_name, ctx)
        ctx = otel_context.set_value(_RUN_KEY, run, ctx)
        with _lock:
            _runs[request] = run
        run.token = otel_context.attach(ctx)
    except Exception:
        if span is not None:
            span.end()
        log_once("celery-prerun", "plyra_trace: could not trace a Celery task; it runs untraced")


def _postrun(task: Any = None, retval: Any = None, state: Any = None, **_: Any) -> None:
    try:
        with _lock:
            run = _runs.pop(getattr(task, "request", None), None)
    except Exception:  # an unhashable request: never ours
        return
    if run is None:
        return
    try:
        otel_context.detach(run.token)  # type: ignore[arg-type]
    except Exception:
        pass
    if not state:  # interrupted by SystemExit or the like (SIGTERM): the task never finished
        if _pool_child:
            return  # the main process records this run with the reason; one span, not two
        interruption = sys.exc_info()[1]
        reason = type(interruption).__name__ if interruption is not None else "unknown"
        run.span.set_status(Status(StatusCode.ERROR, f"interrupted: {reason}"))
        run.span.end()
        return
    try:
        run.span.set_attribute("celery.state", str(state))
        if state == "SUCCESS" and _capture.settings.enabled and retval is not None:
            value, mime = _capture.encode_output(retval)
            run.span.set_attributes({sc.OUTPUT_VALUE: value, sc.OUTPUT_MIME_TYPE: mime})
    except Exception:
        log_once("celery-postrun", "plyra_trace: could not record a Celery task's result")
    finally:
        run.span.end()


def _find_run(request: Any) -> _Run | None:
    try:
        with _lock:
            return _runs.get(request)
    except Exception:
        return None


def _describe(exception: BaseException, task: Any = None) -> str:
    """A status description that says what happened, time limits included (their ``str`` is
    empty or a bare tuple)."""
    from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

    kind = type(exception).__name__
    if isinstance(exception, SoftTimeLimitExceeded):
        request = getattr(task, "request", None)
        limit = getattr(request, "soft_time_limit", None) or getattr(task, "soft_time_limit", None)
        seconds = f" ({limit:g} s)" if isinstance(limit, int | float) else ""
        return f"{kind}: soft time limit{seconds} exceeded"
    if isinstance(exception, TimeLimitExceeded):
        limit = exception.args[0] if exception.args else None
        seconds = f" ({limit:g} s)" if isinstance(limit, int | float) else ""
        return f"{kind}: hard time limit{seconds} exceeded"
    text = str(exception)
    return f"{kind}: {text}" if text else kind


def _record_lost_run(
    task: Any, task_id: str, source: Any, state: str, description: str, exc: Any = None
) -> None:
    """The run span of a task whose process died with it, recorded by the worker's main process:
    child of the task's publish span, from when the child started it until now. Once per id."""
    with _lock:
        if task_id in _recorded:
            return
        _recorded[task_id] = None
        if len(_recorded) > _RECORDED_MAX:
            del _recorded[next(iter(_recorded))]
    name = str(getattr(task, "name", None) or _field(source, "task") or "task")
    carrier = _carrier(source)
    parent, _handoff = _context_for(carrier, fallback=otel_context.Context())
    started = getattr(source, "time_start", None)
    if not isinstance(started, int | float) or not started:
        started = None
    attributes = _run_attributes(name, task_id, source, carrier, parent, started)
    attributes["celery.state"] = state
    span = _runtime.tracer.start_span(
        f"run {name}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        start_time=None if started is None else int(started * 1e9),
    )
    if isinstance(exc, BaseException):
        span.record_exception(exc)
        span.set_attribute("error.type", type(exc).__name__)
    span.set_status(Status(StatusCode.ERROR, description))
    span.end()


def _failure(
    sender: Any = None, task_id: Any = None, exception: BaseException | None = None, **_: Any
) -> None:
    try:
        if exception is None:
            return
        run = _find_run(getattr(sender, "request", None))
        if run is not None:
            run.span.record_exception(exception)
            run.span.set_attribute("error.type", type(exception).__name__)
            run.span.set_status(Status(StatusCode.ERROR, _describe(exception, sender)))
            return
        from celery.exceptions import TimeLimitExceeded, WorkerLostError

        if isinstance(exception, TimeLimitExceeded | WorkerLostError):  # the child is gone
            source = _received.get(str(task_id)) or getattr(sender, "request", None)
            description = _describe(exception, sender)
            _record_lost_run(sender, str(task_id), source, "FAILURE", description, exception)
    except Exception:
        log_once("celery-failure", "plyra_trace: could not record a Celery task's failure")


def _retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    """A retry is not the task's outcome: the attempt keeps status unset, says RETRY and why."""
    try:
        run = _find_run(request)
        if run is not None:
            run.span.add_event("celery.retry", {"reason": str(reason)[:512]})
            run.span.set_attribute("celery.state", "RETRY")
    except Exception:
        log_once("celery-retry", "plyra_trace: could not record a Celery task's retry")


def _signal_name(signum: Any) -> str:
    try:
        return signal.Signals(int(signum)).name
    except (TypeError, ValueError):
        return f"signal {signum}"


def _revoked(
    sender: Any = None,
    request: Any = None,
    terminated: Any = None,
    signum: Any = None,
    expired: Any = None,
    **_: Any,
) -> None:
    """Revoked before it ran, expired, or terminated while running: sent by the worker's main
    process, where no run span exists (a terminated child took its span along), so a run span
    that says what happened is recorded here."""
    try:
        task_id = str(getattr(request, "id", "") or "")
        if terminated:
            description = "revoked: terminated" + (f" ({_signal_name(signum)})" if signum else "")
        elif expired:
            description = "revoked: expired before it ran"
        else:
            description = "revoked before it ran"
        source = _received.get(task_id)
        if source is None or not getattr(source, "time_start", None):
            source = request  # never started here: only the request's headers matter
        _record_lost_run(sender, task_id, source, "REVOKED", description)
    except Exception:
        log_once("celery-revoked", "plyra_trace: could not record a revoked Celery task")


def _task_received(request: Any = None, **_: Any) -> None:
    try:
        task_id = getattr(request, "id", None)
        if task_id:
            _received[str(task_id)] = request
    except Exception:
        pass


def _process_init(**_: Any) -> None:
    global _pool_child
    _pool_child = True


def _end_unfinished_publishes() -> None:
    while _publishing:
        try:
            _, span = _publishing.popitem()
        except KeyError:
            return
        _end_unfinished_publish(span)


def _flush(**_: Any) -> None:
    """Prefork children leave through os._exit: flush here, atexit never runs."""
    try:
        from plyra_trace._config import flush_active

        _end_unfinished_publishes()
        flush_active(5.0)
    except Exception:
        log_once("celery-flush", "plyra_trace: could not flush spans at worker shutdown")


def instrument(app: Any = None, agent_name: str | None = None) -> None:
    """Trace publishes and task runs through Celery's signals (idempotent).

    Signals are process-wide, so every app in the process is traced; ``app`` is accepted for
    symmetry. ``agent_name`` is the agent this worker is; run spans record the handoff to it.
    """
    global _agent_name
    from celery import signals

    _agent_name = agent_name or _agent_name
    if _connected:
        return
    hooks = (
        (signals.before_task_publish, _before_publish),
        (signals.after_task_publish, _after_publish),
        (signals.task_received, _task_received),
        (signals.task_prerun, _prerun),
        (signals.task_postrun, _postrun),
        (signals.task_failure, _failure),
        (signals.task_retry, _retry),
        (signals.task_revoked, _revoked),
        (signals.worker_process_init, _process_init),
        (signals.worker_process_shutdown, _flush),
        (signals.worker_shutdown, _flush),
    )
    for hook, handler in hooks:
        hook.connect(handler, weak=False)
        _connected.append((hook, handler))


def uninstrument() -> None:
    """Disconnect every signal handler ``instrument()`` connected."""
    global _agent_name
    while _connected:
        hook, handler = _connected.pop()
        hook.disconnect(handler)
    _end_unfinished_publishes()
    _agent_name = None
