"""gRPC: calls between agent services land in one trace, the handoff carried in metadata.

Interceptors only (no patching), for ``grpc`` and ``grpc.aio``. The client side opens one CLIENT
span per RPC and writes trace context and baggage (session, user, handoff intent with
``protocol=grpc``) into the call's metadata; the server side opens one SERVER span per RPC as the
child of the caller's span, records ``agent.handoff.*`` and runs the handler with the caller's
session and user and its own agent in context.

    server = grpc.server(pool, interceptors=[server_interceptor(agent_name="researcher")])
    channel = instrument_channel(grpc.insecure_channel(target))
    channel = grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors())
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Final

import grpc
import grpc.aio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from plyra_trace import _runtime
from plyra_trace import _semconv as sc
from plyra_trace._context import scope_attributes, with_agent
from plyra_trace._propagation import (
    continuation,
    extract_context,
    outgoing_context,
    propagator,
    remote_parent,
    take_pending_handoff,
)
from plyra_trace._safety import log_once

__all__ = [
    "aio_client_interceptors",
    "aio_server_interceptor",
    "client_interceptor",
    "instrument_channel",
    "server_interceptor",
]

PROTOCOL: Final = "grpc"
STATUS_CODE: Final = "rpc.grpc.status_code"

# Codes that mean the server failed (OpenTelemetry's RPC conventions); the rest are the caller's
# problem, errors on the client span only.
_SERVER_FAULTS: Final = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_HANDLER_FACTORIES: Final = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _rpc(full_method: Any) -> tuple[str, dict[str, Any]]:
    """Span name and attributes for ``/package.Service/Method``."""
    text = full_method.decode() if isinstance(full_method, bytes) else str(full_method or "")
    service, _, method = text.lstrip("/").rpartition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
    return f"{service}/{method}" if service else method or "grpc", attributes


def _code_value(code: Any) -> int | None:
    value = getattr(code, "value", None)
    return int(value[0]) if isinstance(value, tuple) and value else None


# --- server ---------------------------------------------------------------------------------------


class _ServerCall:
    """One RPC on the server: its SERVER span and the context its handler runs in."""

    __slots__ = ("context", "span")

    def __init__(self, span: Span, context: otel_context.Context) -> None:
        self.span = span
        self.context = context

    @classmethod
    def start(cls, agent_name: str | None, details: Any) -> _ServerCall | None:
        try:
            name, attributes = _rpc(getattr(details, "method", ""))
            received = extract_context(getattr(details, "invocation_metadata", None))
            caller = remote_parent(received)
            if caller is not None:
                parent = continuation(received, PROTOCOL, agent_name)
                attributes.update(take_pending_handoff(parent, caller) or {})  # one write
            else:  # a caller without context: a new trace (or the in-process one)
                parent = otel_context.get_current()
            attributes.update(scope_attributes(parent) or {})
            if agent_name:
                attributes[sc.AGENT_NAME] = agent_name
            span = _runtime.tracer.start_span(
                name, context=parent, kind=SpanKind.SERVER, attributes=attributes
            )
            context = trace.set_span_in_context(span, parent)
            if agent_name:
                context = with_agent(agent_name, context)
            return cls(span, context)
        except Exception:
            log_once("grpc-server", "plyra_trace: could not trace a gRPC call; it runs untraced")
            return None

    def finish(self, servicer_context: Any, error: BaseException | None = None) -> None:
        """End the span with the status the handler set (or the exception it raised)."""
        end_time = time.time_ns()
        try:
            code = _servicer_code(servicer_context)
            if code is None:
                code = _implied_code(error)
            value = _code_value(code)
            if value is not None:
                self.span.set_attribute(STATUS_CODE, value)
            if error is not None and code is grpc.StatusCode.UNKNOWN:
                self.span.record_exception(error, escaped=True)
            if code in _SERVER_FAULTS:
                message = _servicer_details(servicer_context) or (
                    f"{type(error).__name__}: {error}" if error is not None else code.name
                )
                self.span.set_status(Status(StatusCode.ERROR, message))
        except Exception:
            log_once("grpc-status", "plyra_trace: could not record a gRPC call's status")
        finally:
            self.span.end(end_time)


def _implied_code(error: BaseException | None) -> grpc.StatusCode:
    """The status a handler that set none ends with: a client that went away is CANCELLED."""
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, GeneratorExit | asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _servicer_code(servicer_context: Any) -> Any:
    try:
        code = servicer_context.code()
    except Exception:
        return None
    return code if isinstance(code, grpc.StatusCode) else None  # None: no code set, i.e. OK


def _servicer_details(servicer_context: Any) -> str | None:
    try:
        details = servicer_context.details()
    except Exception:
        return None
    if isinstance(details, bytes):
        details = details.decode(errors="replace")
    return details or None


class _Step:
    """Runs one step of a handler (the call, or producing one message) in the call's context;
    an exception other than the end of a stream finishes the span as failed."""

    __slots__ = ("call", "servicer_context", "token")

    def __init__(self, call: _ServerCall, servicer_context: Any) -> None:
        self.call = call
        self.servicer_context = servicer_context

    def __enter__(self) -> None:
        self.token = otel_context.attach(self.call.context)

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        otel_context.detach(self.token)
        if error is not None and not isinstance(error, StopIteration | StopAsyncIteration):
            self.call.finish(self.servicer_context, error)


def _sync_behavior(
    behavior: Callable[..., Any], streaming: bool, start: Callable[[], _ServerCall | None]
) -> Callable[..., Any]:
    if not streaming:

        def unary(request: Any, servicer_context: Any) -> Any:
            call = start()
            if call is None:
                return behavior(request, servicer_context)
            with _Step(call, servicer_context):
                response = behavior(request, servicer_context)
            call.finish(servicer_context)
            return response

        return unary

    def stream(request: Any, servicer_context: Any) -> Iterator[Any]:
        call = start()
        if call is None:
            yield from behavior(request, servicer_context)
            return
        step = _Step(call, servicer_context)
        with step:
            responses = iter(behavior(request, servicer_context))
        while True:
            try:
                with step:
                    response = next(responses)
            except StopIteration:
                break
            try:
                yield response
            except BaseException as error:  # the client went away
                call.finish(servicer_context, error)
                raise
        call.finish(servicer_context)

    return stream


def _async_behavior(
    behavior: Callable[..., Any], streaming: bool, start: Callable[[], _ServerCall | None]
) -> Callable[..., Any]:
    if streaming and inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, servicer_context: Any) -> AsyncIterator[Any]:
            call = start()
            if call is None:
                async for item in behavior(request, servicer_context):
                    yield item
                return
            step = _Step(call, servicer_context)
            responses = behavior(request, servicer_context)
            while True:
                try:
                    with step:
                        response = await responses.__anext__()
                except StopAsyncIteration:
                    break
                try:
                    yield response
                except BaseException as error:  # the client went away
                    call.finish(servicer_context, error)
                    raise
            call.finish(servicer_context)

        return stream

    async def unary(request: Any, servicer_context: Any) -> Any:
        """Unary responses, and streaming handlers that write through ``context.write``."""
        call = start()
        if call is None:
            result = behavior(request, servicer_context)
            return await result if inspect.isawaitable(result) else result
        with _Step(call, servicer_context):
            result = behavior(request, servicer_context)
            if inspect.isawaitable(result):
                result = await result
        call.finish(servicer_context)
        return result

    return unary


def _traced_handler(handler: Any, agent_name: str | None, details: Any, aio: bool) -> Any:
    """The same method handler, its behavior wrapped in one SERVER span per call."""
    if handler is None:
        return None
    found = next(
        (
            (getattr(handler, kind), make)
            for kind, make in _HANDLER_FACTORIES.items()
            if getattr(handler, kind, None) is not None
        ),
        None,
    )
    if found is None:
        return handler
    behavior, factory = found

    def start() -> _ServerCall | None:
        return _ServerCall.start(agent_name, details)

    streaming = bool(getattr(handler, "response_streaming", False))
    wrap = _async_behavior if aio else _sync_behavior
    return factory(
        wrap(behavior, streaming, start),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _ServerInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, agent_name: str | None) -> None:
        self._agent_name = agent_name

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        try:
            return _traced_handler(handler, self._agent_name, details, aio=False)
        except Exception:
            log_once("grpc-handler", "plyra_trace: could not wrap a gRPC handler")
            return handler


class _AioServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, agent_name: str | None) -> None:
        self._agent_name = agent_name

    async def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = await continuation(details)
        try:
            return _traced_handler(handler, self._agent_name, details, aio=True)
        except Exception:
            log_once("grpc-handler", "plyra_trace: could not wrap a gRPC handler")
            return handler


def server_interceptor(agent_name: str | None = None) -> grpc.ServerInterceptor:
    """An interceptor for ``grpc.server(..., interceptors=[...])``; ``agent_name`` is the agent
    this service is (the handoff's receiver)."""
    return _ServerInterceptor(agent_name)


def aio_server_interceptor(agent_name: str | None = None) -> grpc.aio.ServerInterceptor:
    """The same for ``grpc.aio.server(interceptors=[...])``."""
    return _AioServerInterceptor(agent_name)


# --- client ---------------------------------------------------------------------------------------


class _CallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    """The caller's call details with trace context added to the metadata."""

    def __init__(self, details: Any, metadata: Sequence[tuple[str, Any]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


def _start_client(
    details: Any, with_metadata: Callable[[Any, list[tuple[str, str]]], Any]
) -> tuple[Span, Any] | None:
    """The CLIENT span for one call and the call details whose metadata carries it."""
    span: Span | None = None
    try:
        name, attributes = _rpc(details.method)
        outgoing = outgoing_context(protocol=PROTOCOL)
        attributes.update(scope_attributes(outgoing) or {})
        span = _runtime.tracer.start_span(
            name, context=outgoing, kind=SpanKind.CLIENT, attributes=attributes
        )
        carrier: dict[str, str] = {}
        propagator().inject(carrier, context=trace.set_span_in_context(span, outgoing))
        return span, with_metadata(details, list(carrier.items()))
    except Exception:
        if span is not None:
            span.end()
        log_once("grpc-client", "plyra_trace: could not trace a gRPC call; it goes on untraced")
        return None


def _sync_details(details: Any, entries: list[tuple[str, str]]) -> Any:
    return _CallDetails(details, [*(details.metadata or ()), *entries])


def _aio_details(details: Any, entries: list[tuple[str, str]]) -> Any:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), *entries)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def _end_client(span: Span, code: Any, details: Any, end_time: int) -> None:
    try:
        value = _code_value(code)
        if value is not None:
            span.set_attribute(STATUS_CODE, value)
        if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
            span.set_status(Status(StatusCode.ERROR, str(details or code.name)))
    except Exception:
        log_once("grpc-client-status", "plyra_trace: could not record a gRPC call's status")
    finally:
        span.end(end_time)


class _ClientInterceptor(  # grpc ships no type information: its bases are Any
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    def _intercept(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        started = _start_client(details, _sync_details)
        if started is None:
            return continuation(details, request)
        span, traced = started
        try:
            call = continuation(traced, request)
        except BaseException as error:
            span.record_exception(error)
            _end_client(span, grpc.StatusCode.UNKNOWN, str(error), time.time_ns())
            raise

        def done(finished: Any) -> None:
            end_time = time.time_ns()
            try:
                code, text = finished.code(), finished.details()
            except Exception:
                code, text = None, None
            _end_client(span, code, text, end_time)

        call.add_done_callback(done)
        return call

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._intercept(continuation, details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._intercept(continuation, details, request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._intercept(continuation, details, requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._intercept(continuation, details, requests)


def client_interceptor() -> _ClientInterceptor:
    """An interceptor for ``grpc.intercept_channel`` (all four call shapes)."""
    return _ClientInterceptor()


def instrument_channel(channel: grpc.Channel) -> grpc.Channel:
    """``channel`` with one CLIENT span per call and the caller's context in the metadata."""
    return grpc.intercept_channel(channel, _ClientInterceptor())


async def _aio_intercept(continuation: Callable[..., Any], details: Any, request: Any) -> Any:
    started = _start_client(details, _aio_details)
    if started is None:
        return await continuation(details, request)
    span, traced = started
    try:
        call = await continuation(traced, request)
    except BaseException as error:
        span.record_exception(error)
        _end_client(span, grpc.StatusCode.UNKNOWN, str(error), time.time_ns())
        raise

    def done(finished: Any) -> None:
        end_time = time.time_ns()

        async def record() -> None:
            try:
                code, text = await finished.code(), await finished.details()
            except Exception:
                code, text = None, None
            _end_client(span, code, text, end_time)

        try:
            asyncio.get_running_loop().create_task(record())
        except Exception:
            _end_client(span, None, None, end_time)

    call.add_done_callback(done)
    return call


class _AioUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await _aio_intercept(continuation, details, request)


class _AioUnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await _aio_intercept(continuation, details, request)


class _AioStreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await _aio_intercept(continuation, details, requests)


class _AioStreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await _aio_intercept(continuation, details, requests)


def aio_client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for ``grpc.aio.insecure_channel(..., interceptors=...)``: grpc.aio files
    each under one call shape, so there is one per shape."""
    return [_AioUnaryUnary(), _AioUnaryStream(), _AioStreamUnary(), _AioStreamStream()]
