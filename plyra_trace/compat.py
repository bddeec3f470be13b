"""Make spans from other instrumentation first-class plyra spans.

``OpenInferenceSpanProcessor`` adds ``plyra.span.kind`` to spans made by OpenInference
instrumentors; ``OpenLLMetrySpanProcessor`` maps Traceloop/OpenLLMetry kinds and attributes to
ours. Both only use public SDK types: a finished span is rewritten as a new ``ReadableSpan``.
Inside an ``init()`` pipeline they run before the exporter; on another provider, give them the
processor to forward to (``OpenLLMetrySpanProcessor(next_processor=BatchSpanProcessor(...))``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from plyra_trace import _semconv as sc
from plyra_trace._processors import attributes_of, rebuilt
from plyra_trace._runtime import INSTRUMENTATION_NAME

_TRACELOOP_KIND: Final = "traceloop.span.kind"
_TRACELOOP_NAME: Final = "traceloop.entity.name"
_TRACELOOP_INPUT: Final = "traceloop.entity.input"
_TRACELOOP_OUTPUT: Final = "traceloop.entity.output"
_TRACELOOP_PROPERTIES: Final = "traceloop.association.properties."
_TRACELOOP_KINDS: Final = {
    "workflow": sc.SpanKind.CHAIN,
    "task": sc.SpanKind.CHAIN,
    "agent": sc.SpanKind.AGENT,
    "tool": sc.SpanKind.TOOL,
}
_LLM_REQUEST_TYPE: Final = "llm.request.type"

# OpenLLMetry token attribute names, old and new, mapped to ours.
_TOKEN_ATTRIBUTES: Final = (
    ("gen_ai.usage.prompt_tokens", sc.LLM_TOKENS_PROMPT),
    ("gen_ai.usage.input_tokens", sc.LLM_TOKENS_PROMPT),
    ("gen_ai.usage.completion_tokens", sc.LLM_TOKENS_COMPLETION),
    ("gen_ai.usage.output_tokens", sc.LLM_TOKENS_COMPLETION),
    ("llm.usage.total_tokens", sc.LLM_TOKENS_TOTAL),
    ("gen_ai.usage.cache_read_input_tokens", sc.LLM_TOKENS_CACHE_READ),
    ("gen_ai.usage.cache_creation_input_tokens", sc.LLM_TOKENS_CACHE_WRITE),
)


class _TransformingProcessor(SpanProcessor):
    """Base: rewrite finished spans, and forward them when used outside a plyra pipeline."""

    def __init__(self, next_processor: SpanProcessor | None = None) -> None:
        self._next = next_processor

    @property
    def forwards(self) -> bool:
        """Whether ``on_start``/``on_end`` hand spans on (inside a pipeline they need not run)."""
        return self._next is not None

    def transform(self, span: ReadableSpan) -> ReadableSpan:
        attributes = attributes_of(span)
        added = self.attributes_for(attributes)
        return rebuilt(span, {**added, **attributes}) if added else span

    def attributes_for(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if self._next is not None:
            self._next.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self._next is not None:
            self._next.on_end(self.transform(span))

    def shutdown(self) -> None:
        if self._next is not None:
            self._next.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._next.force_flush(timeout_millis) if self._next is not None else True


class OpenInferenceSpanProcessor(_TransformingProcessor):
    """Adds ``plyra.span.kind`` (and the gen_ai operation) to OpenInference spans."""

    def transform(self, span: ReadableSpan) -> ReadableSpan:
        scope = span.instrumentation_scope
        if scope is not None and scope.name == INSTRUMENTATION_NAME:
            return span  # plyra's own spans carry both kinds or neither
        return super().transform(span)

    def attributes_for(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        value = attributes.get(sc.OI_SPAN_KIND)
        if not isinstance(value, str) or sc.PLYRA_SPAN_KIND in attributes:
            return {}
        return dict(sc.kind_attributes(sc.plyra_kind_from_openinference(value)))


class OpenLLMetrySpanProcessor(_TransformingProcessor):
    """Maps Traceloop/OpenLLMetry span kinds and attributes onto plyra and OpenInference names."""

    def attributes_for(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        if sc.PLYRA_SPAN_KIND in attributes:
            return {}
        kind = self._kind(attributes)
        if kind is None:
            return {}
        added: dict[str, Any] = dict(sc.kind_attributes(kind))
        name = attributes.get(_TRACELOOP_NAME)
        if isinstance(name, str):
            if kind is sc.SpanKind.AGENT:
                added[sc.AGENT_NAME] = added[sc.GEN_AI_AGENT_NAME] = name
            elif kind is sc.SpanKind.TOOL:
                added[sc.TOOL_NAME] = added[sc.GEN_AI_TOOL_NAME] = name
        for source, target in (
            (_TRACELOOP_INPUT, sc.INPUT_VALUE),
            (_TRACELOOP_OUTPUT, sc.OUTPUT_VALUE),
        ):
            value = attributes.get(source)
            if isinstance(value, str):
                added[target] = value
                added[f"{target.rsplit('.', 1)[0]}.mime_type"] = _mime(value)
        model = attributes.get(sc.GEN_AI_RESPONSE_MODEL) or attributes.get(sc.GEN_AI_REQUEST_MODEL)
        if isinstance(model, str):
            added[sc.LLM_MODEL_NAME] = model
        provider = attributes.get(sc.GEN_AI_SYSTEM) or attributes.get(sc.GEN_AI_PROVIDER)
        if isinstance(provider, str):
            added[sc.LLM_PROVIDER] = provider.lower()
        for source, target in _TOKEN_ATTRIBUTES:
            value = attributes.get(source)
            if isinstance(value, int) and target not in added:
                added[target] = value
        if sc.LLM_TOKENS_TOTAL not in added and sc.LLM_TOKENS_PROMPT in added:
            added[sc.LLM_TOKENS_TOTAL] = added[sc.LLM_TOKENS_PROMPT] + added.get(
                sc.LLM_TOKENS_COMPLETION, 0
            )
        for key, target in (("session_id", sc.SESSION_ID), ("user_id", sc.USER_ID)):
            value = attributes.get(_TRACELOOP_PROPERTIES + key)
            if value is not None:
                added[target] = str(value)
        return added

    @staticmethod
    def _kind(attributes: Mapping[str, Any]) -> sc.SpanKind | None:
        traceloop_kind = attributes.get(_TRACELOOP_KIND)
        if isinstance(traceloop_kind, str):
            return _TRACELOOP_KINDS.get(traceloop_kind.lower(), sc.SpanKind.UNKNOWN)
        request_type = attributes.get(_LLM_REQUEST_TYPE)
        if request_type == "embedding":
            return sc.SpanKind.EMBEDDING
        if request_type is not None or sc.GEN_AI_SYSTEM in attributes:
            return sc.SpanKind.LLM
        return None


def _mime(value: str) -> str:
    try:
        json.loads(value)
    except ValueError:
        return sc.MIME_TEXT
    return sc.MIME_JSON


__all__ = ["OpenInferenceSpanProcessor", "OpenLLMetrySpanProcessor"]
