"""``PlyraMiddleware``: pure ASGI middleware that turns each request into one SERVER span carrying
the caller's agent handoff (Starlette, FastAPI and any ASGI app; no framework import).

    app.add_middleware(PlyraMiddleware, agent_name="researcher")

FastAPI (0.16x) opens its own SERVER span once an SDK tracer provider exists; the middleware then
enriches that span (handoff, session/user, agent, headers) instead of opening a second one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from plyra_trace._safety import log_once
from plyra_trace.integrations import _http
from plyra_trace.integrations._http import ServerExchange, ServerSettings

__all__ = ["PlyraMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# FastAPI's per-request telemetry object; present and holding a span when FastAPI traces itself.
_FASTAPI_TELEMETRY = "fastapi.telemetry"
# Marks a request already traced by an outer PlyraMiddleware (nested middleware adds nothing).
_EXCHANGE = "plyra_trace.exchange"
_SHUTDOWN_FLUSH_SECONDS = 5.0


class PlyraMiddleware:
    """Trace every HTTP request and WebSocket connection of an ASGI app; at lifespan shutdown,
    export the spans still queued (no spans for lifespan events).

    ``agent_name`` names the agent this service is (the receiver of incoming handoffs).
    ``excluded_urls`` are path regexes left untraced (health checks). ``trust_incoming=False``
    (public endpoints) starts a new trace linked to the caller's and drops incoming baggage.
    ``capture_headers`` lists request/response headers recorded as span attributes.
    ``framework_spans=False`` turns off FastAPI's operation spans (``fastapi.dependencies``,
    ``fastapi.endpoint``, ``fastapi.serialization``, ``fastapi.background_task``) for every
    request through the middleware, leaving the request's SERVER span and the agents' spans.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        agent_name: str | None = None,
        excluded_urls: str | Iterable[str] | None = None,
        trust_incoming: bool = True,
        capture_headers: Iterable[str] | None = None,
        framework_spans: bool = True,
    ) -> None:
        self.app = app
        self._settings = ServerSettings(agent_name, excluded_urls, trust_incoming, capture_headers)
        self._framework_spans = framework_spans

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self.app(scope, receive, _flushing_at_shutdown(send))
            return
        if (kind != "http" and kind != "websocket") or _EXCHANGE in scope:
            await self.app(scope, receive, send)
            return
        exchange = _open(self._settings, scope)
        if not self._framework_spans:
            _without_operation_spans(scope)
        if exchange is None:
            await self.app(scope, receive, send)
            return
        responder = _Responder(exchange, send, scope)
        token = otel_context.attach(exchange.context)
        try:
            await self.app(scope, receive, responder.send if kind == "http" else send)
        except BaseException as error:
            responder.failed(error)
            raise
        finally:
            otel_context.detach(token)
            responder.close()


def _flushing_at_shutdown(send: Send) -> Send:
    """The lifespan ``send`` that exports queued spans before the app reports shutdown complete.

    uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown with the default handler back in
    place, so the process dies without running atexit and the SDK's exit flush never happens.
    """

    async def lifespan_send(message: Message) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await _flush()
        await send(message)

    return lifespan_send


async def _flush() -> None:
    try:
        from plyra_trace._config import flush_active

        # bounded: a dead collector cannot hold the shutdown
        await asyncio.to_thread(flush_active, _SHUTDOWN_FLUSH_SECONDS)
    except Exception:
        log_once("asgi.flush", "plyra_trace: could not flush spans at application shutdown")


def _open(settings: ServerSettings, scope: Scope) -> ServerExchange | None:
    """Start (or join) the request's server span; None when the request stays untraced."""
    try:
        path = scope.get("path") or "/"
        if settings.is_excluded(path):
            return None
        headers = scope.get("headers") or ()
        existing = _existing_server_span(scope)
        if existing is not None:
            extra = (
                _http.header_attributes("request", headers, settings.allow)
                if settings.allow
                else {}
            )
            names = _http.context_header_names()[0]
            carrier = [(key, value) for key, value in headers if key in names]
            joined = ServerExchange.join(settings, existing, carrier, dict(extra), bool(carrier))
            scope[_EXCHANGE] = joined
            return joined
        method, attributes, carrier = _request_attributes(scope, path)
        if settings.allow:
            attributes.update(_http.header_attributes("request", headers, settings.allow))
        exchange = ServerExchange.start(settings, carrier, method, attributes, bool(carrier))
        # Any FastAPI app inside steps aside for this request: its span would be a second one.
        scope.setdefault(_FASTAPI_TELEMETRY, None)
        scope[_EXCHANGE] = exchange
        return exchange
    except Exception:
        log_once("asgi.start", "plyra_trace: could not trace an ASGI request; it runs untraced")
        return None


def _without_operation_spans(scope: Scope) -> None:
    """Turn FastAPI's operation spans off for this request only.

    FastAPI (0.16x) opens them through the tracer on its per-request telemetry object (the scope's
    ``"fastapi.telemetry"``, also the one its context holds); ``FastAPI(telemetry=
    {"operation_spans": False})`` is what leaves that tracer unset. Unsetting it here is the same
    switch for one request, so no span is made and dropped, and the app's config is untouched.
    """
    telemetry = scope.get(_FASTAPI_TELEMETRY)
    if telemetry is not None and getattr(telemetry, "tracer", None) is not None:
        try:
            telemetry.tracer = None
        except Exception:
            log_once("asgi.framework-spans", "plyra_trace: could not turn FastAPI's spans off")


def _existing_server_span(scope: Scope) -> Span | None:
    telemetry = scope.get(_FASTAPI_TELEMETRY)
    span = getattr(telemetry, "span", None) if telemetry is not None else None
    if span is not None and callable(getattr(span, "is_recording", None)) and span.is_recording():
        return span  # type: ignore[no-any-return]
    return None


def _request_attributes(
    scope: Scope, path: str
) -> tuple[str, dict[str, Any], list[tuple[Any, Any]]]:
    """The span-name method and start attributes of an ASGI request, and its headers that carry
    trace context, in order (all the propagators read; the rest need not be normalised)."""
    websocket = scope.get("type") == "websocket"
    scheme = str(scope.get("scheme") or ("ws" if websocket else "http"))
    attributes: dict[str, Any]
    if websocket:
        method, attributes = "WS", {_http.PROTOCOL_NAME: "websocket"}
    else:
        method, named = _http.method_attributes(str(scope.get("method") or "GET"))
        attributes = dict(named)
        version = scope.get("http_version")
        if version:
            attributes[_http.PROTOCOL_VERSION] = str(version)
    attributes[_http.URL_SCHEME] = scheme
    attributes[_http.URL_PATH] = path
    query = scope.get("query_string")
    if query:
        attributes[_http.URL_QUERY] = _http.redact_query(bytes(query).decode("latin-1"))
    host = user_agent = None
    context_names = _http.context_header_names()[0]
    carrier: list[tuple[Any, Any]] = []
    for key, value in scope.get("headers") or ():
        if key == b"host":
            if host is None:
                host = bytes(value).decode("latin-1")
        elif key == b"user-agent":
            if user_agent is None:
                user_agent = bytes(value).decode("latin-1")
        elif key in context_names:
            carrier.append((key, value))
    if host is None and scope.get("server"):
        server = scope["server"]
        host = f"{server[0]}:{server[1]}" if len(server) > 1 and server[1] else str(server[0])
    attributes.update(_http.server_address(host, scheme))
    if user_agent:
        attributes[_http.USER_AGENT] = user_agent
    client = scope.get("client")
    if client:
        attributes[_http.CLIENT_ADDRESS] = str(client[0])
        if len(client) > 1 and client[1] is not None:
            attributes[_http.CLIENT_PORT] = int(client[1])
    return method, attributes, carrier


def _route_template(scope: Scope, root_path: str) -> str | None:
    """The matched route template, e.g. ``/items/{item_id}`` (mount prefixes included)."""
    template = getattr(scope.get("route"), "path_format", None)
    if not isinstance(template, str):
        return None
    current_root = str(scope.get("root_path") or "")
    prefix = current_root[len(root_path) :] if current_root.startswith(root_path) else ""
    if template.endswith("/{path:path}"):  # a mounted app that is not a router
        return prefix + "/{path}"
    return prefix + template


class _Responder:
    """Per-request ``send`` wrapper: sees the status and body chunks, ends the span with the
    body (so streaming responses are timed to their last byte)."""

    __slots__ = ("_exchange", "_root_path", "_scope", "_send", "_trailers")

    def __init__(self, exchange: ServerExchange, send: Send, scope: Scope) -> None:
        self._exchange = exchange
        self._send = send
        self._scope = scope
        self._root_path = str(scope.get("root_path") or "")
        self._trailers = False

    async def send(self, message: Message) -> None:
        final = False
        try:
            final = self._observe(message)
        except Exception:
            log_once("asgi.send", "plyra_trace: could not observe an ASGI response message")
        await self._send(message)
        if final:
            self.close()

    def _observe(self, message: Message) -> bool:
        exchange = self._exchange
        kind = message.get("type")
        if kind == "http.response.body":
            exchange.body_chunk(len(message.get("body") or b""))
            if message.get("more_body", False) or self._trailers:
                return False
        elif kind == "http.response.start":
            self._trailers = bool(message.get("trailers", False))
            exchange.response_started(int(message["status"]), message.get("headers"))
            return False
        elif kind == "http.response.trailers":
            if message.get("more_trailers", False):
                return False
        elif kind != "http.response.pathsend":
            return False
        if exchange.owned:  # a span another library owns is named by its owner
            exchange.route = _route_template(self._scope, self._root_path)
        exchange.body_done()
        return True

    def failed(self, error: BaseException) -> None:
        try:
            if self._exchange.route is None:
                self._exchange.route = _route_template(self._scope, self._root_path)
            self._exchange.fail(error)
        except Exception:
            log_once("asgi.fail", "plyra_trace: could not record an exception on a request span")

    def close(self) -> None:
        exchange = self._exchange
        if exchange.ended:
            return
        try:
            if exchange.route is None and exchange.owned:
                exchange.route = _route_template(self._scope, self._root_path)
            exchange.finish(incomplete=self._scope.get("type") == "http")
        except Exception:
            log_once("asgi.end", "plyra_trace: could not end a request span")
