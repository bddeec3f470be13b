"""MCP: tool calls between agents land in one trace, on the spans mcp already makes.

mcp (2.x) opens its own CLIENT span per request and SERVER span per inbound message, and carries
``traceparent`` and ``baggage`` in ``params._meta``. We never add a second span: the client side
makes the handoff intent current so mcp's own injection carries it, and a server middleware (inside
mcp's tracing middleware) turns mcp's server span into a TOOL, RETRIEVER or PROMPT span with input,
output and the ``agent.handoff.*`` attributes, and runs the handler with the caller's session and
user in context. Over streamable HTTP behind ``PlyraMiddleware``, mcp's span nests under the HTTP
server span when the HTTP request continued the same caller (see ``instrument_http_client``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Mapping
from contextvars import Token
from typing import Any, Final

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, StatusCode

from plyra_trace import _capture
from plyra_trace import _semconv as sc
from plyra_trace._context import SCOPE_KEY, current_scope, with_agent
from plyra_trace._processors import ERROR_MESSAGE
from plyra_trace._propagation import (
    context_fields,
    extract_context,
    handoff_attributes,
    outgoing_context,
    propagator,
    remote_parent,
    scope_from_baggage,
    without_handoff,
)
from plyra_trace._safety import log_once

__all__ = ["instrument_client", "instrument_http_client", "instrument_server"]

PROTOCOL: Final = "mcp"
_MARK: Final = "__plyra_instrumented__"
_MCP_SCOPE: Final = "mcp-python-sdk"  # the instrumentation scope of mcp's own spans
_KINDS: Final = {
    "tools/call": sc.SpanKind.TOOL,
    "resources/read": sc.SpanKind.RETRIEVER,
    "prompts/get": sc.SpanKind.PROMPT,
}
_MAX_DOCUMENTS: Final = 16
_MAX_ERROR_CHARS: Final = 1024


# --- results -----------------------------------------------------------------------------------


def _field(item: Any, name: str, alias: str | None = None) -> Any:
    """``item[name]`` for wire dicts, ``item.name`` (or its alias) for pydantic models."""
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, alias or name, None)


def _texts(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    texts = []
    for item in items:
        text = _field(item, "text")
        if isinstance(text, str):
            texts.append(text)
    return texts


def _result_text(result: Any) -> tuple[str | None, bool]:
    """A tools/call result's text content and whether it is an error (model or dict)."""
    content = _field(result, "content")
    is_error = bool(_field(result, "isError", "is_error"))
    if not isinstance(content, list):
        return None, is_error
    return "\n".join(_texts(content)), is_error


def _tool_output(result: Any) -> tuple[dict[str, Any], str | None]:
    """Output attributes of a tools/call result, and its error text when ``isError``."""
    text, is_error = _result_text(result)
    attributes: dict[str, Any] = {}
    if _capture.settings.enabled:
        structured = _field(result, "structuredContent", "structured_content")
        value = text if text or structured is None else structured
        if value is not None:
            attributes[sc.OUTPUT_VALUE], attributes[sc.OUTPUT_MIME_TYPE] = _capture.encode_output(
                value
            )
    if not is_error:
        return attributes, None
    return attributes, (text or "tool returned an error result")[:_MAX_ERROR_CHARS]


def _resource_output(result: Any) -> dict[str, Any]:
    """resources/read: the text contents as output and as OpenInference retrieval documents."""
    contents = _field(result, "contents")
    if not isinstance(contents, list) or not _capture.settings.enabled:
        return {}
    attributes: dict[str, Any] = {}
    texts = []
    prefix = "retrieval.documents"
    for index, item in enumerate(contents[:_MAX_DOCUMENTS]):
        uri = _field(item, "uri")
        text = _field(item, "text")
        if isinstance(uri, str):
            attributes[f"{prefix}.{index}.document.id"] = uri
        if isinstance(text, str):
            texts.append(text)
            attributes[f"{prefix}.{index}.document.content"] = _capture.encode_output(text)[0]
    attributes[sc.OUTPUT_VALUE], attributes[sc.OUTPUT_MIME_TYPE] = _capture.encode_output(
        "\n".join(texts)
    )
    return attributes


def _prompt_output(result: Any) -> dict[str, Any]:
    """prompts/get: the rendered messages (role and text) as output."""
    messages = _field(result, "messages")
    if not isinstance(messages, list) or not _capture.settings.enabled:
        return {}
    rendered = []
    for message in messages:
        content = _field(message, "content")
        text = _field(content, "text") if content is not None else None
        rendered.append({"role": _field(message, "role"), "content": text})
    value, mime = _capture.encode_output(rendered)
    return {sc.OUTPUT_VALUE: value, sc.OUTPUT_MIME_TYPE: mime}


# --- server ------------------------------------------------------------------------------------


def _is_mcp_span(span: trace.Span) -> bool:
    """Whether ``span`` is mcp's own server span (so enriching it never touches another one)."""
    scope = getattr(span, "instrumentation_scope", None)
    return getattr(scope, "name", None) == _MCP_SCOPE


def _received(
    meta: Mapping[str, Any] | None, current: otel_context.Context
) -> otel_context.Context:
    """The context the request arrived with: trace, session, user and handoff baggage.

    mcp starts its span from ``_meta`` but does not make the rest of it (the baggage) current,
    so it is read here. Without context in ``_meta``, what is ambient came with the request
    (in-process calls).
    """
    if meta is None or not any(field in meta for field in context_fields()):
        return current
    received = extract_context(meta)
    if remote_parent(received) is None and not baggage.get_all(received):
        return current
    return received


def _request_attributes(
    kind: sc.SpanKind, params: Mapping[str, Any], agent_name: str | None
) -> dict[str, Any]:
    """The kind, target and input attributes of one inbound request."""
    attributes: dict[str, Any] = dict(sc.kind_attributes(kind))
    if agent_name:
        attributes[sc.AGENT_NAME] = agent_name
    if kind is sc.SpanKind.RETRIEVER:
        uri = params.get("uri")
        if isinstance(uri, str) and _capture.settings.enabled:
            attributes[sc.INPUT_VALUE], attributes[sc.INPUT_MIME_TYPE] = _capture.encode_output(uri)
        return attributes
    name = params.get("name")
    if kind is sc.SpanKind.TOOL and isinstance(name, str):
        attributes[sc.TOOL_NAME] = attributes[sc.GEN_AI_TOOL_NAME] = name
    arguments = params.get("arguments")
    if isinstance(arguments, Mapping) and _capture.settings.enabled:
        value, mime = _capture.encode_input(dict(arguments))
        attributes[sc.INPUT_VALUE], attributes[sc.INPUT_MIME_TYPE] = value, mime
    return attributes


class _PlyraServerMiddleware:
    """Enriches mcp's server span and makes the caller's scope current for the handler.

    Every inbound message gets the caller's session and user; tools/call, resources/read and
    prompts/get also get their span kind, input, output and the handoff.
    """

    def __init__(self, agent_name: str | None) -> None:
        self._agent_name = agent_name

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        kind = _KINDS.get(getattr(ctx, "method", ""))
        span = trace.get_current_span()
        enrich = False
        token = None
        try:
            enrich = _is_mcp_span(span)
            token = self._enter(ctx, kind, span if enrich else None)
        except Exception:
            log_once("mcp-server", "plyra_trace: could not enrich an MCP server span")
        try:
            result = await call_next(ctx)
        finally:
            if token is not None:
                otel_context.detach(token)
        if enrich and kind is not None:
            _record_result(span, kind, result)
        return result

    def _enter(
        self, ctx: Any, kind: sc.SpanKind | None, span: trace.Span | None
    ) -> Token[otel_context.Context] | None:
        """Attach the handler's context and enrich ``span``; the token to detach, if any."""
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        meta = ctx.meta if isinstance(ctx.meta, Mapping) else params.get("_meta")
        if kind is None and not isinstance(meta, Mapping):
            return None  # nothing arrived and nothing to describe
        current = ambient = otel_context.get_current()
        received = _received(meta if isinstance(meta, Mapping) else None, current)
        scope = scope_from_baggage(received)
        if scope is not None:  # already in baggage: only the scope itself is set
            before = current_scope(current)
            if (before.session_id, before.user_id) == (scope.session_id, scope.user_id):
                scope = before  # in-process: the caller's scope is already current
            else:
                scope = before.replace(session_id=scope.session_id, user_id=scope.user_id)
                current = otel_context.set_value(SCOPE_KEY, scope, current)
        if self._agent_name and kind is not None:
            current = with_agent(self._agent_name, current)
        current = without_handoff(current)
        token = None if current is ambient else otel_context.attach(current)
        if span is not None:
            attributes: dict[str, Any] = {}
            if kind is not None:
                attributes = _request_attributes(kind, params, self._agent_name)
                attributes.update(handoff_attributes(received, PROTOCOL, self._agent_name))
            if scope is not None:
                attributes.update(scope.attributes)
            span.set_attributes(attributes)
        return token


def _record_result(span: trace.Span, kind: sc.SpanKind, result: Any) -> None:
    """Output attributes, and ERROR with the tool's own text for an ``isError`` result."""
    try:
        if kind is sc.SpanKind.TOOL:
            attributes, error = _tool_output(result)
            if error is not None:
                attributes[ERROR_MESSAGE] = error
                span.set_status(StatusCode.ERROR, error)
        elif kind is sc.SpanKind.RETRIEVER:
            attributes = _resource_output(result)
        else:
            attributes = _prompt_output(result)
        span.set_attributes(attributes)
    except Exception:
        log_once("mcp-result", "plyra_trace: could not record an MCP result")


class _PlyraTransportParent:
    """Runs before mcp's tracing middleware: nests mcp's span under the transport's server span.

    Behind ``PlyraMiddleware`` the HTTP request's SERVER span is current when the message is
    handled. When that span continued the very span named in ``_meta`` (the client sent the same
    context in its headers), mcp's span becomes its child instead of its sibling; a transport
    span in another trace only gets a link to the caller. Nothing changes for other transports.
    """

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        span = trace.get_current_span()
        if getattr(span, "kind", None) is not SpanKind.SERVER:  # stdio, in-process: no transport
            return await call_next(ctx)
        try:
            nested = _nest_under(span, ctx)
        except Exception:
            log_once("mcp-transport", "plyra_trace: could not relate an MCP span to its transport")
            nested = None
        return await call_next(ctx if nested is None else nested)


def _nest_under(span: trace.Span, ctx: Any) -> Any:
    """``ctx`` with ``_meta`` naming ``span`` as the parent, or None to leave it as it is."""
    meta = ctx.meta
    if not isinstance(meta, Mapping) or not meta:
        return None  # mcp parents its span under the ambient transport span by itself
    caller = remote_parent(extract_context(meta))
    if caller is None:
        return None
    own = span.get_span_context()
    if own.trace_id != caller.trace_id:
        if span.is_recording():
            span.add_link(caller)
        return None
    transport_parent = getattr(span, "parent", None)
    if getattr(transport_parent, "span_id", None) != caller.span_id:
        return None
    carrier: dict[str, str] = {}
    propagator().inject(carrier, context=trace.set_span_in_context(span, otel_context.Context()))
    if not carrier:
        return None
    return dataclasses.replace(ctx, meta={**meta, **carrier})


def _record_failures(
    call: Callable[..., Awaitable[Any]], protocol_error: type[Exception]
) -> Callable[..., Awaitable[Any]]:
    """Record an exception escaping an ``MCPServer`` tool, resource or prompt on mcp's span.

    ``MCPServer`` turns a crashing tool into an ``isError`` result whose text hides the cause,
    so mcp's span never sees the exception; the original is recorded here, the response is not
    touched.
    """

    @functools.wraps(call)
    async def recorded(*args: Any, **kwargs: Any) -> Any:
        try:
            return await call(*args, **kwargs)
        except Exception as error:
            if not isinstance(error, protocol_error):  # mcp's own span records those
                _record_exception(error)
            raise

    setattr(recorded, _MARK, True)
    return recorded


def _record_exception(error: Exception) -> None:
    try:
        span = trace.get_current_span()
        if not _is_mcp_span(span):
            return
        cause = error.__cause__
        wrapped = type(error).__module__.startswith("mcp.") and isinstance(cause, Exception)
        span.record_exception(cause if wrapped and cause is not None else error)
    except Exception:
        log_once("mcp-exception", "plyra_trace: could not record an MCP handler exception")


def instrument_server(server: Any, agent_name: str | None = None) -> Any:
    """Instrument an ``MCPServer`` or low-level ``Server`` (idempotent); returns it.

    ``agent_name`` names the agent the server is: the ``to`` of the handoffs it receives.
    """
    middleware = getattr(server, "middleware", None)
    if not isinstance(middleware, list):
        raise TypeError("instrument_server() takes an mcp MCPServer or low-level Server")
    if not any(isinstance(m, _PlyraServerMiddleware) for m in middleware):
        middleware.append(_PlyraServerMiddleware(agent_name))
    if not any(isinstance(m, _PlyraTransportParent) for m in middleware):
        for index, existing in enumerate(middleware):
            if type(existing).__name__ == "OpenTelemetryMiddleware":
                middleware.insert(index, _PlyraTransportParent())
                break
    if hasattr(server, "_lowlevel_server"):  # MCPServer: it catches handler exceptions itself
        from mcp import MCPError

        for method in ("call_tool", "read_resource", "get_prompt"):
            call = getattr(server, method, None)
            if call is not None and not getattr(call, _MARK, False):
                setattr(server, method, _record_failures(call, MCPError))
    return server


# --- client ------------------------------------------------------------------------------------


def _with_handoff(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(call)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        try:
            token = otel_context.attach(outgoing_context(protocol=PROTOCOL))
        except Exception:
            log_once("mcp-client", "plyra_trace: could not attach MCP handoff context")
            return await call(*args, **kwargs)
        try:
            return await call(*args, **kwargs)
        finally:
            otel_context.detach(token)

    setattr(traced, _MARK, True)
    return traced


def instrument_client(client: Any) -> Any:
    """Carry handoff intent, session and user on a ``Client``'s or ``ClientSession``'s requests.

    mcp's own span and ``_meta`` injection stay; we only make the outgoing context current.
    """
    for method in ("call_tool", "read_resource", "get_prompt"):
        call = getattr(client, method, None)
        if call is not None and not getattr(call, _MARK, False):
            setattr(client, method, _with_handoff(call))
    return client


async def _inject_headers(request: Any) -> None:
    """httpx2 request hook: the current trace context, session and user as headers."""
    try:
        carrier: dict[str, str] = {}
        propagator().inject(carrier, context=without_handoff(otel_context.get_current()))
        headers = request.headers
        for key, value in carrier.items():
            if key not in headers:
                headers[key] = value
    except Exception:
        log_once("mcp-http-headers", "plyra_trace: could not add trace headers to an MCP request")


setattr(_inject_headers, _MARK, True)


def instrument_http_client(http_client: Any) -> Any:
    """Make the ``httpx2.AsyncClient`` of mcp's streamable HTTP transport send trace headers.

    mcp carries context only in ``_meta``; with this hook each HTTP request also carries it in
    ``traceparent``/``baggage`` (handoff entries excluded: the handoff belongs to the MCP span),
    so a ``PlyraMiddleware`` in front of the server continues the caller's trace::

        http = instrument_http_client(httpx2.AsyncClient())
        Client(streamable_http_client(url, http_client=http))

    No span is added. Idempotent; returns the client.
    """
    hooks = http_client.event_hooks
    requests = list(hooks.get("request", []))
    if not any(getattr(hook, _MARK, False) for hook in requests):
        hooks["request"] = [*requests, _inject_headers]
        http_client.event_hooks = hooks
    return http_client
