"""Span kinds and attribute names: plyra's own, OpenInference and OpenTelemetry GenAI side by side.

This is the one place that turns a span kind into attributes, so every decorator, the SpanBuilder,
the compat processors and the collector agree on names.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final

from openinference.semconv.trace import OpenInferenceSpanKindValues as _OIKind
from openinference.semconv.trace import SpanAttributes as _OI

# --- plyra-native -------------------------------------------------------------------------------
PLYRA_SPAN_KIND: Final = "plyra.span.kind"
AGENT_NAME: Final = "agent.name"
AGENT_FRAMEWORK: Final = "agent.framework"
AGENT_PATTERN: Final = "agent.pattern"
HANDOFF_FROM: Final = "agent.handoff.from"
HANDOFF_TO: Final = "agent.handoff.to"
HANDOFF_REASON: Final = "agent.handoff.reason"
HANDOFF_PROTOCOL: Final = "agent.handoff.protocol"
GUARD_NAME: Final = "guard.name"
GUARD_POLICY: Final = "guard.policy"
GUARD_ACTION: Final = "guard.action"
GUARD_TRIGGERED: Final = "guard.triggered"
GUARD_CONFIDENCE: Final = "guard.confidence"
GUARD_DETAILS: Final = "guard.details"
GUARD_PROVIDER: Final = "guard.provider"
COST_CURRENCY: Final = "llm.cost.currency"

# --- OpenInference ------------------------------------------------------------------------------
OI_SPAN_KIND: Final = _OI.OPENINFERENCE_SPAN_KIND
INPUT_VALUE: Final = _OI.INPUT_VALUE
INPUT_MIME_TYPE: Final = _OI.INPUT_MIME_TYPE
OUTPUT_VALUE: Final = _OI.OUTPUT_VALUE
OUTPUT_MIME_TYPE: Final = _OI.OUTPUT_MIME_TYPE
SESSION_ID: Final = _OI.SESSION_ID
USER_ID: Final = _OI.USER_ID
METADATA: Final = _OI.METADATA
TAGS: Final = _OI.TAG_TAGS
TOOL_NAME: Final = _OI.TOOL_NAME
TOOL_DESCRIPTION: Final = _OI.TOOL_DESCRIPTION
TOOL_PARAMETERS: Final = _OI.TOOL_PARAMETERS
LLM_MODEL_NAME: Final = _OI.LLM_MODEL_NAME
LLM_PROVIDER: Final = _OI.LLM_PROVIDER
LLM_SYSTEM: Final = _OI.LLM_SYSTEM
LLM_TOKENS_PROMPT: Final = _OI.LLM_TOKEN_COUNT_PROMPT
LLM_TOKENS_COMPLETION: Final = _OI.LLM_TOKEN_COUNT_COMPLETION
LLM_TOKENS_TOTAL: Final = _OI.LLM_TOKEN_COUNT_TOTAL
LLM_TOKENS_CACHE_READ: Final = _OI.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ
LLM_TOKENS_CACHE_WRITE: Final = _OI.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_WRITE
LLM_TOKENS_REASONING: Final = _OI.LLM_TOKEN_COUNT_COMPLETION_DETAILS_REASONING
LLM_COST_PROMPT: Final = _OI.LLM_COST_PROMPT
LLM_COST_COMPLETION: Final = _OI.LLM_COST_COMPLETION
LLM_COST_TOTAL: Final = _OI.LLM_COST_TOTAL
MIME_JSON: Final = "application/json"
MIME_TEXT: Final = "text/plain"

# --- OpenTelemetry GenAI ------------------------------------------------------------------------
GEN_AI_OPERATION: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_CACHE_WRITE_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"

# --- baggage keys (what crosses process boundaries) ----------------------------------------------
BAGGAGE_SESSION: Final = "session.id"
BAGGAGE_USER: Final = "user.id"
BAGGAGE_HANDOFF_FROM: Final = "plyra.handoff.from"
BAGGAGE_HANDOFF_TO: Final = "plyra.handoff.to"
BAGGAGE_HANDOFF_REASON: Final = "plyra.handoff.reason"
BAGGAGE_HANDOFF_PROTOCOL: Final = "plyra.handoff.protocol"
# The baggage entries that describe one hop's handoff (they must not travel to the next hop).
BAGGAGE_HANDOFF: Final = (
    BAGGAGE_HANDOFF_FROM,
    BAGGAGE_HANDOFF_TO,
    BAGGAGE_HANDOFF_REASON,
    BAGGAGE_HANDOFF_PROTOCOL,
)

IN_PROCESS: Final = "in-process"
LIVE_HEARTBEAT: Final = "plyra.live.heartbeat_s"
"""On live records of running spans only: the heartbeat interval (s) the sender keeps."""


class SpanKind(StrEnum):
    """What a span is in an agent system; every span carries it as ``plyra.span.kind``."""

    AGENT = "AGENT"
    TOOL = "TOOL"
    GUARD = "GUARD"
    LLM = "LLM"
    CHAIN = "CHAIN"
    RETRIEVER = "RETRIEVER"
    ROUTER = "ROUTER"
    EMBEDDING = "EMBEDDING"
    RERANKER = "RERANKER"
    EVALUATOR = "EVALUATOR"
    PROMPT = "PROMPT"
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return self.value


# plyra kinds that OpenInference does not know are shown to Phoenix as their closest kin.
_OPENINFERENCE_KIND: Final = {
    SpanKind.GUARD: _OIKind.GUARDRAIL.value,
    SpanKind.ROUTER: _OIKind.CHAIN.value,
}

# The gen_ai operation a kind performs, where the GenAI conventions name one.
_GEN_AI_OPERATION: Final = {
    SpanKind.AGENT: "invoke_agent",
    SpanKind.TOOL: "execute_tool",
    SpanKind.LLM: "chat",
    SpanKind.EMBEDDING: "embeddings",
}


def openinference_kind(kind: SpanKind) -> str:
    """The ``openinference.span.kind`` value for a plyra kind."""
    return _OPENINFERENCE_KIND.get(kind, kind.value)


def plyra_kind_from_openinference(value: str) -> SpanKind:
    """The plyra kind for an OpenInference kind (GUARDRAIL -> GUARD, unknown values -> UNKNOWN)."""
    if value == _OIKind.GUARDRAIL.value:
        return SpanKind.GUARD
    try:
        return SpanKind(value.upper())
    except ValueError:
        return SpanKind.UNKNOWN


def kind_attributes(kind: SpanKind) -> MappingProxyType[str, str]:
    """The attributes every span of ``kind`` starts with (computed once per kind)."""
    return _KIND_ATTRIBUTES[kind]


def _build_kind_attributes(kind: SpanKind) -> MappingProxyType[str, str]:
    attributes = {PLYRA_SPAN_KIND: kind.value, OI_SPAN_KIND: openinference_kind(kind)}
    operation = _GEN_AI_OPERATION.get(kind)
    if operation is not None:
        attributes[GEN_AI_OPERATION] = operation
    return MappingProxyType(attributes)


_KIND_ATTRIBUTES: Final = {kind: _build_kind_attributes(kind) for kind in SpanKind}


def coerce_kind(kind: SpanKind | str) -> SpanKind:
    """Accept ``SpanKind.TOOL``, ``"TOOL"`` or ``"tool"``; reject anything else clearly."""
    if isinstance(kind, SpanKind):
        return kind
    try:
        return SpanKind(str(kind).upper())
    except ValueError:
        known = ", ".join(k.value for k in SpanKind)
        raise ValueError(f"unknown span kind {kind!r}; expected one of {known}") from None
