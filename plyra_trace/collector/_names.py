"""Attribute names only the collector reads: other conventions' spellings of what _semconv names.

plyra's own names and the OpenInference/GenAI ones live in :mod:`plyra_trace._semconv`; this module
adds the OpenLLMetry (traceloop) and older spellings the collector accepts on ingest.
"""

from __future__ import annotations

from typing import Final

SERVICE_NAME: Final = "service.name"
PROJECT_NAMES: Final = ("plyra.project", "openinference.project.name")

TRACELOOP_SPAN_KIND: Final = "traceloop.span.kind"
TRACELOOP_ENTITY_NAME: Final = "traceloop.entity.name"
TRACELOOP_ENTITY_INPUT: Final = "traceloop.entity.input"
TRACELOOP_ENTITY_OUTPUT: Final = "traceloop.entity.output"
TRACELOOP_SESSION: Final = "traceloop.association.properties.session_id"
TRACELOOP_USER: Final = "traceloop.association.properties.user_id"
LLM_REQUEST_TYPE: Final = "llm.request.type"
LLM_USAGE_PROMPT: Final = "llm.usage.prompt_tokens"
LLM_USAGE_COMPLETION: Final = "llm.usage.completion_tokens"
LLM_USAGE_TOTAL: Final = "llm.usage.total_tokens"
LLM_USAGE_CACHE_READ: Final = "llm.usage.cache_read_input_tokens"
GEN_AI_USAGE_PROMPT: Final = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION: Final = "gen_ai.usage.completion_tokens"
GEN_AI_USAGE_CACHE_READ_OLD: Final = "gen_ai.usage.cache_read_input_tokens"
GEN_AI_USAGE_CACHE_WRITE_OLD: Final = "gen_ai.usage.cache_creation_input_tokens"
GEN_AI_USAGE_COST: Final = "gen_ai.usage.cost"
LLM_REQUEST_MODEL: Final = "llm.request.model"
LLM_RESPONSE_MODEL: Final = "llm.response.model"
LLM_VENDOR: Final = "llm.vendor"
