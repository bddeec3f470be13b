"""``AutoSpanProcessor``: spans of instrumentors and self-tracing SDKs made first-class plyra spans.

Every ``init()`` pipeline runs it. On the spans OpenInference instrumentors (and SDKs that trace
themselves, like anthropic 2.x) produce it adds model, provider, token counts and genai-prices
cost to LLM spans and keeps one token count per chain of nested LLM spans. What a framework's spans
mean as agents (LangGraph nodes, AG2 replies, CrewAI tasks) is an ``AgentRule`` that lives with the
framework's integration (``plyra_trace/integrations/``), which adds it for its instrumentation
scope when imported (the package imports them); the core knows no framework.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind

from plyra_trace import _semconv as sc
from plyra_trace._context import current_agent
from plyra_trace._llm import LLMUsage, cost_attributes, infer_provider
from plyra_trace._processors import attributes_of, rebuilt
from plyra_trace._runtime import INSTRUMENTATION_NAME
from plyra_trace._safety import log_once

ANTHROPIC_SDK_SCOPE: Final = "com.anthropic.sdk.python"
_OI_SCOPE_PREFIX: Final = "openinference.instrumentation."
_ANTHROPIC_OI_SCOPE: Final = "openinference.instrumentation.anthropic"
# Where a stripped token count was counted instead: "child" (a nested LLM span measured the same
# call) or "parent" (the span duplicates the OpenInference span above it).
USAGE_COUNTED_ON: Final = "plyra.llm.usage_counted_on"
_MAX_OPEN: Final = 50_000
_USAGE_PREFIXES: Final = ("llm.token_count.", "llm.cost.", "gen_ai.usage.")
_GEN_AI_CACHE_WRITE_ALT: Final = "gen_ai.usage.cache_write.input_tokens"  # anthropic 2.x's name


class OpenSpan:
    """What the processor remembers about a span while it runs (agent rules read and update it)."""

    __slots__ = (
        "enclosing_agent",
        "has_llm",
        "last_agent",
        "parent",
        "prev_agent",
        "scope",
        "state",
        "usage_below",
    )

    def __init__(self, parent: OpenSpan | None, scope: str, enclosing_agent: str | None) -> None:
        self.parent = parent
        self.scope = scope
        self.enclosing_agent = enclosing_agent
        self.has_llm = False  # an LLM span finished somewhere below
        self.usage_below = False  # a span below carried token counts
        self.last_agent: str | None = None  # the last agent node that finished as a child
        self.state: Any = None  # what a scope's reader keeps about the span while it runs
        self.prev_agent = (
            (parent.last_agent or parent.enclosing_agent) if parent is not None else enclosing_agent
        )


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished span of a framework's instrumentor, as an agent rule sees it."""

    span: ReadableSpan
    attributes: Mapping[str, Any]
    kind: str  # its plyra kind (from plyra's or OpenInference's attribute)
    entry: OpenSpan  # what the processor remembered of it while it ran (and below it)

    def text(self, key: str) -> str | None:
        """Attribute ``key`` if it is a non-empty string."""
        return text(self.attributes.get(key))


# Reads a framework's finished span as an agent: the attributes to add, or None.
AgentRule = Callable[[Finished], Mapping[str, Any] | None]


def agent_attributes(name: str, framework: str) -> dict[str, Any]:
    """The attributes that make a framework's span the AGENT span of agent ``name``."""
    return {
        **sc.kind_attributes(sc.SpanKind.AGENT),
        sc.AGENT_NAME: name,
        sc.GEN_AI_AGENT_NAME: name,
        sc.AGENT_FRAMEWORK: framework,
    }


def in_process_handoff(sender: str | None, receiver: str) -> dict[str, str]:
    """Handoff attributes from ``sender`` to ``receiver`` in one process (none for no change)."""
    if not sender or sender == receiver:
        return {}
    return {sc.HANDOFF_FROM: sender, sc.HANDOFF_TO: receiver, sc.HANDOFF_PROTOCOL: sc.IN_PROCESS}


def text(value: Any) -> str | None:
    """``value`` if it is a non-empty string."""
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _tracked_at_start(span: Span, scope: str) -> bool:
    """Whether a span with no remembered parent is worth remembering: LLM or instrumentor spans.

    plyra's LLM spans are INTERNAL (its SERVER/CLIENT/PRODUCER/CONSUMER spans are transport hops),
    so those are never looked into.
    """
    if scope == INSTRUMENTATION_NAME:
        if span.kind is not SpanKind.INTERNAL:
            return False
        return attributes_of(span).get(sc.PLYRA_SPAN_KIND) == sc.SpanKind.LLM.value
    return scope.startswith(_OI_SCOPE_PREFIX) or scope == ANTHROPIC_SDK_SCOPE or scope in _readers


def _kind_of(attributes: Mapping[str, Any]) -> str | None:
    kind = attributes.get(sc.PLYRA_SPAN_KIND)
    if isinstance(kind, str):
        return kind
    oi_kind = attributes.get(sc.OI_SPAN_KIND)
    if isinstance(oi_kind, str):
        return sc.plyra_kind_from_openinference(oi_kind).value
    return None


def _llm_enrichment(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Model, provider, OpenInference token counts and cost for an LLM span that lacks them."""
    added: dict[str, Any] = {}
    model = (
        text(attributes.get(sc.LLM_MODEL_NAME))
        or text(attributes.get(sc.GEN_AI_RESPONSE_MODEL))
        or text(attributes.get(sc.GEN_AI_REQUEST_MODEL))
    )
    provider = (
        text(attributes.get(sc.LLM_PROVIDER))
        or text(attributes.get(sc.GEN_AI_PROVIDER))
        or text(attributes.get(sc.GEN_AI_SYSTEM))
    )
    if model and sc.LLM_MODEL_NAME not in attributes:
        added[sc.LLM_MODEL_NAME] = model
    if provider is None:
        provider = infer_provider(model)
    if provider and sc.LLM_PROVIDER not in attributes:
        added[sc.LLM_PROVIDER] = provider.lower()
    if sc.LLM_TOKENS_PROMPT in attributes or sc.LLM_TOKENS_COMPLETION in attributes:
        prompt = _int(attributes.get(sc.LLM_TOKENS_PROMPT))
        completion = _int(attributes.get(sc.LLM_TOKENS_COMPLETION))
        cache_read = _int(attributes.get(sc.LLM_TOKENS_CACHE_READ))
        cache_write = _int(attributes.get(sc.LLM_TOKENS_CACHE_WRITE))
    elif sc.GEN_AI_INPUT_TOKENS in attributes or sc.GEN_AI_OUTPUT_TOKENS in attributes:
        prompt = _int(attributes.get(sc.GEN_AI_INPUT_TOKENS))  # includes cached input
        completion = _int(attributes.get(sc.GEN_AI_OUTPUT_TOKENS))
        cache_read = _int(attributes.get(sc.GEN_AI_CACHE_READ_TOKENS))
        cache_write = _int(
            attributes.get(sc.GEN_AI_CACHE_WRITE_TOKENS) or attributes.get(_GEN_AI_CACHE_WRITE_ALT)
        )
        added[sc.LLM_TOKENS_PROMPT] = prompt
        added[sc.LLM_TOKENS_COMPLETION] = completion
        added[sc.LLM_TOKENS_TOTAL] = prompt + completion
        if cache_read:
            added[sc.LLM_TOKENS_CACHE_READ] = cache_read
        if cache_write:
            added[sc.LLM_TOKENS_CACHE_WRITE] = cache_write
    else:
        return added
    if sc.LLM_COST_TOTAL not in attributes and (prompt or completion):
        usage = LLMUsage(prompt, completion, cache_read, cache_write)
        added.update(cost_attributes(usage, model, provider.lower() if provider else None))
    return added


def _has_usage(attributes: Mapping[str, Any]) -> bool:
    return (
        sc.LLM_TOKENS_PROMPT in attributes
        or sc.LLM_TOKENS_COMPLETION in attributes
        or sc.GEN_AI_INPUT_TOKENS in attributes
        or sc.GEN_AI_OUTPUT_TOKENS in attributes
    )


def _without_usage(attributes: Mapping[str, Any], counted_on: str) -> dict[str, Any]:
    kept = {k: v for k, v in attributes.items() if not k.startswith(_USAGE_PREFIXES)}
    kept[USAGE_COUNTED_ON] = counted_on
    return kept


class ScopeReader(Protocol):
    """Reads every span of one instrumentation scope (a library that traces itself): told when
    a span starts (to keep ``entry.state``), it returns the span as plyra records it."""

    def started(self, span: Span, entry: OpenSpan) -> None: ...

    def finished(self, span: ReadableSpan, entry: OpenSpan) -> ReadableSpan: ...


_rules: dict[str, AgentRule] = {}
_readers: dict[str, ScopeReader] = {}


def add_scope_reader(scope: str, reader: ScopeReader) -> None:
    """Hand every span of instrumentation ``scope`` to ``reader`` (integrations call it when
    imported, e.g. for guard libraries whose spans become GUARD decisions)."""
    _readers[scope] = reader


def add_agent_rule(scope: str, rule: AgentRule) -> None:
    """Read the spans of instrumentation ``scope`` as agents with ``rule`` (integrations call it
    when imported; the core knows no framework)."""
    _rules[scope] = rule


class AutoSpanProcessor(SpanProcessor):
    """Makes instrumentor and SDK spans first-class plyra spans (runs in every ``init()``).

    It remembers only spans that can matter (LLM spans, OpenInference and anthropic SDK spans, and
    spans below them) while they run; any other span costs a lookup or two, and spans of other
    instrumentations that it did not remember are handed on untouched, unread.
    """

    def __init__(self) -> None:
        self._open: dict[int, OpenSpan] = {}

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        parent_entry = None
        if self._open:  # remote parents are never in it
            parent = span.parent
            if parent is not None:
                parent_entry = self._open.get(parent.span_id)
        scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
        if parent_entry is None and not _tracked_at_start(span, scope):
            return
        if len(self._open) >= _MAX_OPEN:  # spans that never end must not grow memory forever
            log_once("auto-open", "plyra_trace: too many unfinished spans; enrichment is partial")
            return
        enclosing = parent_entry.enclosing_agent if parent_entry else current_agent(parent_context)
        entry = OpenSpan(parent_entry, scope, enclosing)
        reader = _readers.get(scope) if _readers else None
        if reader is not None:
            reader.started(span, entry)
        self._open[span.context.span_id] = entry

    def transform(self, span: ReadableSpan) -> ReadableSpan:
        entry = self._open.pop(span.context.span_id, None) if self._open else None
        if entry is None:
            return span  # nothing that matters started it or ran below it
        try:
            return self._transform(span, entry)
        except Exception:
            log_once("auto-span", "plyra_trace: could not enrich an instrumented span")
            return span

    def _transform(self, span: ReadableSpan, entry: OpenSpan) -> ReadableSpan:
        scope = entry.scope
        reader = _readers.get(scope) if _readers else None
        if reader is not None:
            return reader.finished(span, entry)
        attributes = dict(attributes_of(span))
        kind = _kind_of(attributes)
        if kind is None and scope != ANTHROPIC_SDK_SCOPE:
            return span
        if scope == ANTHROPIC_SDK_SCOPE:
            kind = self._anthropic_sdk_kind(attributes, entry)
            if kind is None:  # duplicates the OpenInference span of the same call
                attributes.update(sc.kind_attributes(sc.SpanKind.UNKNOWN))
                return rebuilt(span, _without_usage(attributes, "parent"))
        if kind is None:
            return span
        changed = False
        if kind == sc.SpanKind.LLM.value:
            added = _llm_enrichment(attributes)
            if added:
                attributes.update(added)
                changed = True
            if entry.usage_below and _has_usage(attributes):
                attributes = _without_usage(attributes, "child")
                changed = True
            self._mark_ancestors(entry, usage=_has_usage(attributes))
        else:
            rule = _rules.get(scope)
            agent = rule(Finished(span, attributes, kind, entry)) if rule is not None else None
            if agent:
                attributes.update(agent)
                changed = True
        if sc.PLYRA_SPAN_KIND not in attributes:
            attributes.update(sc.kind_attributes(sc.SpanKind(kind)))
            changed = True
        return rebuilt(span, attributes) if changed else span

    @staticmethod
    def _anthropic_sdk_kind(attributes: dict[str, Any], entry: OpenSpan) -> str | None:
        """LLM for a messages call, None when an OpenInference span above already records it."""
        if attributes.get(sc.GEN_AI_OPERATION) != "chat":
            return sc.SpanKind.UNKNOWN.value
        parent = entry.parent
        if parent is not None and parent.scope == _ANTHROPIC_OI_SCOPE:
            return None
        attributes.update(sc.kind_attributes(sc.SpanKind.LLM))
        return sc.SpanKind.LLM.value

    @staticmethod
    def _mark_ancestors(entry: OpenSpan, *, usage: bool) -> None:
        node = entry.parent
        while node is not None:
            node.has_llm = True
            if usage:
                node.usage_below = True
            node = node.parent

    def shutdown(self) -> None:
        self._open.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


__all__ = [
    "USAGE_COUNTED_ON",
    "AgentRule",
    "AutoSpanProcessor",
    "Finished",
    "OpenSpan",
    "ScopeReader",
    "add_agent_rule",
    "add_scope_reader",
    "agent_attributes",
    "in_process_handoff",
    "text",
]
