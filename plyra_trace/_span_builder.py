"""SpanBuilder: a span you open with ``with`` (or ``async with``) when a decorator does not fit."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from plyra_trace import _capture, _runtime
from plyra_trace import _semconv as sc
from plyra_trace._context import current_agent, scope_attributes, with_agent
from plyra_trace._guard import GuardResult
from plyra_trace._llm import (
    LLMUsage,
    cost_attributes,
    infer_provider,
    model_attributes,
    usage_attributes,
)
from plyra_trace._safety import log_once
from plyra_trace._wrapper import _fail


class SpanBuilder:
    """A span of a plyra kind, current inside the ``with`` block.

    An exception inside the block marks the span ERROR and propagates unchanged.
    """

    def __init__(
        self,
        name: str,
        kind: sc.SpanKind | str = sc.SpanKind.CHAIN,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        self.name = name
        self.kind = sc.coerce_kind(kind)
        self._attributes = {**sc.kind_attributes(self.kind), **(attributes or {})}
        self._span: Span = trace.INVALID_SPAN
        self._parent: otel_context.Context | None = None
        self._token: object | None = None
        self._status_set = False

    @property
    def span(self) -> Span:
        """The underlying OpenTelemetry span (for anything this class does not wrap)."""
        return self._span

    # --- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> SpanBuilder:
        try:
            self._parent = otel_context.get_current()
            scoped = scope_attributes(self._parent)
            attributes = {**self._attributes, **scoped} if scoped else self._attributes
            self._span = _runtime.tracer.start_span(
                self.name, context=self._parent, attributes=attributes
            )
            self._token = otel_context.attach(trace.set_span_in_context(self._span, self._parent))
        except Exception:
            log_once("builder", "plyra_trace: SpanBuilder could not start its span")
            self._span = trace.INVALID_SPAN
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None
        if exc is not None:
            _fail(self._span, exc)
            return
        if not self._status_set:
            self._span.set_status(Status(StatusCode.OK))
        self._span.end()

    async def __aenter__(self) -> SpanBuilder:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # --- setters ----------------------------------------------------------------------------------
    def set_attribute(self, key: str, value: AttributeValue) -> SpanBuilder:
        self._span.set_attribute(key, value)
        return self

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> SpanBuilder:
        self._span.set_attributes(attributes)
        return self

    def set_input(self, value: Any) -> SpanBuilder:
        """Record the step's input (JSON, bounded and redacted like decorator capture)."""
        if _capture.settings.enabled:
            text, mime = (
                _capture.encode_input(dict(value))
                if isinstance(value, Mapping)
                else _capture.encode_output(value)
            )
            self._span.set_attributes({sc.INPUT_VALUE: text, sc.INPUT_MIME_TYPE: mime})
        return self

    def set_output(self, value: Any) -> SpanBuilder:
        """Record the step's output (JSON, or plain text for strings)."""
        if _capture.settings.enabled:
            text, mime = _capture.encode_output(value)
            self._span.set_attributes({sc.OUTPUT_VALUE: text, sc.OUTPUT_MIME_TYPE: mime})
        return self

    def set_agent(
        self, name: str, framework: str | None = None, pattern: str | None = None
    ) -> SpanBuilder:
        """Mark this span as agent ``name``; spans opened inside it see it as the current agent."""
        attributes: dict[str, AttributeValue] = {sc.AGENT_NAME: name, sc.GEN_AI_AGENT_NAME: name}
        if framework:
            attributes[sc.AGENT_FRAMEWORK] = framework
        if pattern:
            attributes[sc.AGENT_PATTERN] = pattern
        caller = current_agent(self._parent)
        if caller is not None and caller != name:
            attributes[sc.HANDOFF_FROM] = caller
            attributes[sc.HANDOFF_TO] = name
            attributes[sc.HANDOFF_PROTOCOL] = sc.IN_PROCESS
        self._span.set_attributes(attributes)
        if self._token is not None and otel_context.get_current() is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            ctx = with_agent(name, trace.set_span_in_context(self._span, self._parent))
            self._token = otel_context.attach(ctx)
        return self

    def set_tool(
        self, name: str, description: str | None = None, parameters: Any = None
    ) -> SpanBuilder:
        attributes: dict[str, AttributeValue] = {sc.TOOL_NAME: name, sc.GEN_AI_TOOL_NAME: name}
        if description:
            attributes[sc.TOOL_DESCRIPTION] = description
            attributes[sc.GEN_AI_TOOL_DESCRIPTION] = description
        if parameters is not None:
            attributes[sc.TOOL_PARAMETERS] = _capture.encode_json(parameters)
        self._span.set_attributes(attributes)
        return self

    def set_guard(self, result: GuardResult) -> SpanBuilder:
        """Record a guard decision (``guard.*``); a block is not an error."""
        self._span.set_attributes(result.to_attributes())
        return self

    def set_llm(
        self,
        model: str | None = None,
        provider: str | None = None,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> SpanBuilder:
        """Record the model and, when given, token usage priced with genai-prices."""
        self._span.set_attributes(
            llm_attributes(
                model,
                provider,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read_tokens,
                cache_write_tokens=cache_write_tokens,
            )
        )
        return self

    def add_event(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> SpanBuilder:
        self._span.add_event(name, attributes=attributes)
        return self

    def set_error(self, message: str) -> SpanBuilder:
        """Mark the span failed without raising."""
        self._span.set_status(Status(StatusCode.ERROR, message))
        self._status_set = True
        return self


def llm_attributes(
    model: str | None,
    provider: str | None,
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> dict[str, AttributeValue]:
    """Model, provider, usage and cost attributes for explicitly reported LLM usage."""
    provider = provider or infer_provider(model)
    attributes: dict[str, AttributeValue] = dict(model_attributes(model, provider))
    if input_tokens is not None or output_tokens is not None:
        usage = LLMUsage(
            input_tokens=input_tokens or 0,
            output_tokens=output_tokens or 0,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
        )
        attributes.update(usage_attributes(usage))
        attributes.update(cost_attributes(usage, model, provider))
    return attributes


def record_llm_usage(
    model: str | None = None,
    provider: str | None = None,
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> None:
    """Report token usage on the current span (inside an ``@llm`` function, say), priced."""
    try:
        span = trace.get_current_span()
        if model is None:
            known = getattr(span, "attributes", None) or {}
            found = known.get(sc.LLM_MODEL_NAME)
            model = found if isinstance(found, str) else None
        span.set_attributes(
            llm_attributes(
                model,
                provider,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read_tokens,
                cache_write_tokens=cache_write_tokens,
            )
        )
    except Exception:
        log_once("usage", "plyra_trace: could not record LLM usage on the current span")
