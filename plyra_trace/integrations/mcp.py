"""MCP: tool calls between agents land in one trace, on the spans mcp already makes.

mcp (2.x) opens its own CLIENT span per request and SERVER span per inbound message, and carries
``traceparent`` and ``baggage`` in ``params._meta``. We never add a second span: the client side
makes the handoff intent current so mcp's own injection carries it, and a server middleware (inside
mcp's tracing middleware) turns mcp's server span into a TOOL span with input, output and the
``agent.handoff.*`` attributes, and runs the tool with the caller's session and user in context.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from plyra_trace import _capture
from plyra_trace import _semconv as sc
from plyra_trace._context import with_agent, with_scope
from plyra_trace._processors import ERROR_MESSAGE
from plyra_trace._propagation import (
    extract_context,
    handoff_attributes,
    outgoing_context,
    remote_parent,
    scope_from_baggage,
)
from plyra_trace._safety import log_once

PROTOCOL: Final = "mcp"
_MARK: Final = "__plyra_instrumented__"
_KINDS: Final = {
    "tools/call": sc.SpanKind.TOOL,
    "resources/read": sc.SpanKind.RETRIEVER,
    "prompts/get": sc.SpanKind.PROMPT,
}


def _result_text(result: Any) -> tuple[str | None, bool]:
    """A tools/call result's text content and whether it is an error (model or dict)."""
    if isinstance(result, Mapping):
        content, is_error = result.get("content"), bool(result.get("isError"))
    else:
        content, is_error = (
            getattr(result, "content", None),
            bool(getattr(result, "is_error", False)),
        )
    if not isinstance(content, list):
        return None, is_error
    parts = []
    for item in content:
        text = item.get("text") if isinstance(item, Mapping) else getattr(item, "text", None)
        if isinstance(text, str):
            parts.append(text)
    return "\n".join(parts), is_error


class _PlyraServerMiddleware:
    """Enriches mcp's server span and makes the caller's scope current for the handler."""

    def __init__(self, agent_name: str | None) -> None:
        self._agent_name = agent_name

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        kind = _KINDS.get(getattr(ctx, "method", ""))
        if kind is None:
            return await call_next(ctx)
        span = trace.get_current_span()
        token = None
        try:
            params = ctx.params if isinstance(ctx.params, Mapping) else {}
            meta = ctx.meta if isinstance(ctx.meta, Mapping) else params.get("_meta")
            received = extract_context(meta if isinstance(meta, Mapping) else None)
            if remote_parent(received) is None:  # in-process: the caller's context is ambient
                received = otel_context.get_current()
            attributes: dict[str, Any] = dict(sc.kind_attributes(kind))
            target = params.get("name") or params.get("uri")
            if kind is sc.SpanKind.TOOL and isinstance(target, str):
                attributes[sc.TOOL_NAME] = attributes[sc.GEN_AI_TOOL_NAME] = target
            if self._agent_name:
                attributes[sc.AGENT_NAME] = self._agent_name
            arguments = params.get("arguments")
            if isinstance(arguments, Mapping) and _capture.settings.enabled:
                value, mime = _capture.encode_input(dict(arguments))
                attributes[sc.INPUT_VALUE], attributes[sc.INPUT_MIME_TYPE] = value, mime
            attributes.update(handoff_attributes(received, PROTOCOL, self._agent_name))
            scope = scope_from_baggage(received)
            current = otel_context.get_current()
            if scope is not None:
                attributes.update(scope.attributes)
                current = with_scope(scope, current)
            if self._agent_name:
                current = with_agent(self._agent_name, current)
            token = otel_context.attach(current)
            span.set_attributes(attributes)
        except Exception:
            log_once("mcp-server", "plyra_trace: could not enrich an MCP server span")
        try:
            result = await call_next(ctx)
        finally:
            if token is not None:
                otel_context.detach(token)
        try:
            text, is_error = _result_text(result)
            if text is not None and _capture.settings.enabled:
                value, mime = _capture.encode_output(text)
                span.set_attributes({sc.OUTPUT_VALUE: value, sc.OUTPUT_MIME_TYPE: mime})
            if is_error:
                message = text or "tool returned an error result"
                span.set_attribute(ERROR_MESSAGE, message[:1024])
                span.set_status(StatusCode.ERROR, message[:1024])
        except Exception:
            log_once("mcp-result", "plyra_trace: could not record an MCP result")
        return result


def instrument_server(server: Any, agent_name: str | None = None) -> Any:
    """Instrument an ``MCPServer`` or low-level ``Server`` (idempotent); returns it."""
    middleware = getattr(server, "middleware", None)
    if not isinstance(middleware, list):
        raise TypeError("instrument_server() takes an mcp MCPServer or low-level Server")
    if not any(isinstance(m, _PlyraServerMiddleware) for m in middleware):
        middleware.append(_PlyraServerMiddleware(agent_name))
    return server


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
