"""Turn OTLP spans of any dialect (plyra, OpenInference, OpenLLMetry, OTel GenAI) into SpanRecords.

One pass per span: flatten attributes, pick the first present spelling of each concept, bound sizes,
and price LLM usage unless the sender already put a cost on the span.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from plyra_trace import _semconv as sc
from plyra_trace.collector import _names as n
from plyra_trace.collector.config import CollectorConfig
from plyra_trace.collector.model import SpanRecord
from plyra_trace.collector.pricing import Pricer, infer_provider

_OTEL_KINDS: Final = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_TRACELOOP_KINDS: Final = {
    "workflow": sc.SpanKind.CHAIN,
    "task": sc.SpanKind.CHAIN,
    "agent": sc.SpanKind.AGENT,
    "tool": sc.SpanKind.TOOL,
}
_PLYRA_KINDS: Final = {kind.value: kind for kind in sc.SpanKind}
_GEN_AI_OPERATIONS: Final = {
    "chat": sc.SpanKind.LLM,
    "text_completion": sc.SpanKind.LLM,
    "generate_content": sc.SpanKind.LLM,
    "embeddings": sc.SpanKind.EMBEDDING,
    "execute_tool": sc.SpanKind.TOOL,
    "invoke_agent": sc.SpanKind.AGENT,
    "create_agent": sc.SpanKind.AGENT,
}
# Spans of no agent kind still say what they carry: the UI shows HTTP, messaging and RPC hops
# (server middleware, Celery, MCP transport spans) as such instead of as UNKNOWN.
_TRANSPORT_KINDS: Final = (
    (("http.request.method", "http.method"), "HTTP"),
    (("messaging.system",), "MESSAGING"),
    (("mcp.method.name", "rpc.system"), "RPC"),
    (("db.system.name", "db.system"), "DATABASE"),
)
# Instrumentation scopes of web frameworks (their own tracing and OpenTelemetry's contrib
# instrumentations of them): their spans of no agent kind and no transport are the framework's
# internal steps (FastAPI's dependencies, endpoint and serialisation; ASGI send/receive) and are
# labelled as such instead of UNKNOWN.
FRAMEWORK_KIND: Final = "FRAMEWORK"
_FRAMEWORK_SCOPES: Final = frozenset(
    {
        "fastapi",
        "starlette",
        "django",
        "flask",
        "opentelemetry.instrumentation.asgi",
        "opentelemetry.instrumentation.wsgi",
        "opentelemetry.instrumentation.fastapi",
        "opentelemetry.instrumentation.starlette",
        "opentelemetry.instrumentation.django",
        "opentelemetry.instrumentation.flask",
    }
)
_MODEL_KEYS: Final = (
    sc.LLM_MODEL_NAME,
    sc.GEN_AI_RESPONSE_MODEL,
    sc.GEN_AI_REQUEST_MODEL,
    n.LLM_RESPONSE_MODEL,
    n.LLM_REQUEST_MODEL,
)
_PROVIDER_KEYS: Final = (
    sc.LLM_PROVIDER,
    sc.GEN_AI_PROVIDER,
    sc.GEN_AI_SYSTEM,
    sc.LLM_SYSTEM,
    n.LLM_VENDOR,
)
_INPUT_KEYS: Final = (
    sc.LLM_TOKENS_PROMPT,
    sc.GEN_AI_INPUT_TOKENS,
    n.LLM_USAGE_PROMPT,
    n.GEN_AI_USAGE_PROMPT,
)
_OUTPUT_KEYS: Final = (
    sc.LLM_TOKENS_COMPLETION,
    sc.GEN_AI_OUTPUT_TOKENS,
    n.LLM_USAGE_COMPLETION,
    n.GEN_AI_USAGE_COMPLETION,
)
_CACHE_READ_KEYS: Final = (
    sc.LLM_TOKENS_CACHE_READ,
    sc.GEN_AI_CACHE_READ_TOKENS,
    n.GEN_AI_USAGE_CACHE_READ_OLD,
    n.LLM_USAGE_CACHE_READ,
)
_CACHE_WRITE_KEYS: Final = (
    sc.LLM_TOKENS_CACHE_WRITE,
    sc.GEN_AI_CACHE_WRITE_TOKENS,
    n.GEN_AI_USAGE_CACHE_WRITE_OLD,
)
_TOTAL_KEYS: Final = (sc.LLM_TOKENS_TOTAL, n.LLM_USAGE_TOTAL)
_USAGE_HINTS: Final = frozenset(
    (
        *_MODEL_KEYS,
        *_PROVIDER_KEYS,
        *_INPUT_KEYS,
        *_OUTPUT_KEYS,
        *_TOTAL_KEYS,
        sc.LLM_COST_TOTAL,
        sc.LLM_COST_PROMPT,
        sc.LLM_COST_COMPLETION,
        n.GEN_AI_USAGE_COST,
    )
)
_SESSION_KEYS: Final = (sc.SESSION_ID, sc.GEN_AI_CONVERSATION_ID, n.TRACELOOP_SESSION)
_USER_KEYS: Final = (sc.USER_ID, n.TRACELOOP_USER)
_SCOPE_HINTS: Final = frozenset((*_SESSION_KEYS, *_USER_KEYS))
_HANDOFF_HINTS: Final = frozenset((sc.HANDOFF_FROM, sc.HANDOFF_TO, sc.HANDOFF_PROTOCOL))
_IO_KEYS: Final = frozenset(
    {sc.INPUT_VALUE, sc.OUTPUT_VALUE, n.TRACELOOP_ENTITY_INPUT, n.TRACELOOP_ENTITY_OUTPUT}
)


@dataclass(slots=True)
class Normalised:
    """The spans of one request that were accepted, and why any others were not."""

    spans: list[SpanRecord]
    rejected: int = 0
    message: str = ""


def mark_running(records: Sequence[SpanRecord]) -> None:
    """Turn normalised live records into running spans: no end, no status, no usage (a span
    counts in totals only once finished), and the sender's heartbeat interval."""
    for record in records:
        beat = record.attributes.pop(sc.LIVE_HEARTBEAT, None)
        record.running = True
        record.heartbeat_ns = int(beat * 1e9) if isinstance(beat, int | float) and beat > 0 else 0
        record.end_ns = record.start_ns
        record.status, record.status_message = 0, ""
        record.input_tokens = record.output_tokens = record.total_tokens = None
        record.cache_read_tokens = record.cache_write_tokens = None
        record.cost = record.cost_source = None
        record.output_value = record.output_mime = None
        record.events = []


class Normaliser:
    """Normalises export requests with the limits of one collector configuration."""

    def __init__(self, config: CollectorConfig, pricer: Pricer) -> None:
        self._config = config
        self._pricer = pricer

    def warm_prices(self) -> None:
        """Load the price table before the first priced span needs it."""
        self._pricer.warm()

    def request(self, request: ExportTraceServiceRequest) -> Normalised:
        """The spans of an export request; those over the limit or with bad ids are rejected."""
        out = Normalised(spans=[])
        budget = self._config.max_spans_per_request
        bad_ids = over_limit = 0
        for resource_spans in request.resource_spans:
            resource = self._attributes(resource_spans.resource.attributes)
            where = _service_and_project(resource)
            for scope_spans in resource_spans.scope_spans:
                framework = scope_spans.scope.name in _FRAMEWORK_SCOPES
                for span in scope_spans.spans:
                    if len(span.trace_id) != 16 or len(span.span_id) != 8:
                        bad_ids += 1
                    elif len(out.spans) >= budget:
                        over_limit += 1
                    else:
                        out.spans.append(self.span(span, resource, where, framework))
        out.rejected = bad_ids + over_limit
        reasons = []
        if bad_ids:
            reasons.append(f"{bad_ids} span(s) without a 16-byte trace id and 8-byte span id")
        if over_limit:
            reasons.append(f"{over_limit} span(s) over the {budget}-span request limit")
        out.message = "; ".join(reasons)
        return out

    def span(
        self,
        span: Span,
        resource: dict[str, Any],
        where: tuple[str, str] | None = None,
        framework: bool = False,
    ) -> SpanRecord:
        """One OTLP span as a SpanRecord; ``where`` is (service, project) if already known,
        ``framework`` whether a web framework's instrumentation made it."""
        attrs = self._attributes(span.attributes)
        if where is None:
            where = _service_and_project(resource)
        limit = self._config.max_attribute_chars
        kind = span.kind
        status = span.status
        parent = span.parent_span_id
        record = SpanRecord(
            span.trace_id.hex(),
            span.span_id.hex(),
            parent.hex() if len(parent) == 8 else None,
            span.name[:limit] or "(unnamed)",
            _OTEL_KINDS[kind] if 0 <= kind < len(_OTEL_KINDS) else "UNSPECIFIED",
            _kind(attrs, framework),
            where[0],
            where[1],
            span.start_time_unix_nano,
            span.end_time_unix_nano or span.start_time_unix_nano,
            status.code,
            status.message[:limit],
        )
        record.resource = resource
        self._identity(record, attrs)
        self._usage(record, attrs)
        if not _IO_KEYS.isdisjoint(attrs):
            self._io(record, attrs)
            attrs = {k: v for k, v in attrs.items() if k not in _IO_KEYS}
        if span.events:
            record.events = [
                {
                    "name": event.name,
                    "time_ns": int(event.time_unix_nano),
                    "attributes": self._attributes(event.attributes),
                }
                for event in span.events[:128]
            ]
        record.attributes = attrs
        return record

    def _identity(self, record: SpanRecord, attrs: Mapping[str, Any]) -> None:
        record.agent = _first_text(attrs, (sc.AGENT_NAME, sc.GEN_AI_AGENT_NAME))
        if record.agent is None and attrs.get(n.TRACELOOP_SPAN_KIND) == "agent":
            record.agent = _text(attrs.get(n.TRACELOOP_ENTITY_NAME))
        if not _SCOPE_HINTS.isdisjoint(attrs):
            record.session_id = _first_text(attrs, _SESSION_KEYS)
            record.user_id = _first_text(attrs, _USER_KEYS)
        if not _HANDOFF_HINTS.isdisjoint(attrs):
            record.handoff_from = _text(attrs.get(sc.HANDOFF_FROM))
            record.handoff_to = _text(attrs.get(sc.HANDOFF_TO))
            record.handoff_protocol = _text(attrs.get(sc.HANDOFF_PROTOCOL))
            if record.handoff_to and not record.handoff_protocol:
                record.handoff_protocol = sc.IN_PROCESS

    def _usage(self, record: SpanRecord, attrs: Mapping[str, Any]) -> None:
        if _USAGE_HINTS.isdisjoint(attrs):
            return
        record.model = _first_text(attrs, _MODEL_KEYS)
        record.provider = _first_text(attrs, _PROVIDER_KEYS)
        if record.provider is None and record.model:
            record.provider = infer_provider(record.model)
        record.input_tokens = _first_int(attrs, _INPUT_KEYS)
        record.output_tokens = _first_int(attrs, _OUTPUT_KEYS)
        record.cache_read_tokens = _first_int(attrs, _CACHE_READ_KEYS)
        record.cache_write_tokens = _first_int(attrs, _CACHE_WRITE_KEYS)
        total = _first_int(attrs, _TOTAL_KEYS)
        if total is None and (record.input_tokens is not None or record.output_tokens is not None):
            total = (record.input_tokens or 0) + (record.output_tokens or 0)
        record.total_tokens = total
        cost = _span_cost(attrs)
        if cost is not None:
            record.cost, record.cost_source = cost, "span"
        elif record.model and total is not None:
            record.cost = self._price(record)
            record.cost_source = "genai-prices" if record.cost is not None else None

    def _price(self, record: SpanRecord) -> float | None:
        assert record.model is not None
        cache_read = record.cache_read_tokens or 0
        cache_write = record.cache_write_tokens or 0
        input_tokens = record.input_tokens or 0
        # genai-prices counts cached tokens inside input_tokens; Anthropic-style senders do not.
        if input_tokens < cache_read + cache_write:
            input_tokens += cache_read + cache_write
        return self._pricer.price(
            record.model,
            record.provider,
            input_tokens,
            record.output_tokens or 0,
            cache_read,
            cache_write,
        )

    def _io(self, record: SpanRecord, attrs: Mapping[str, Any]) -> None:
        limit = self._config.max_io_chars
        value = attrs.get(sc.INPUT_VALUE, attrs.get(n.TRACELOOP_ENTITY_INPUT))
        if value is not None:
            record.input_value = _as_text(value)[:limit]
            record.input_mime = _text(attrs.get(sc.INPUT_MIME_TYPE))
        value = attrs.get(sc.OUTPUT_VALUE, attrs.get(n.TRACELOOP_ENTITY_OUTPUT))
        if value is not None:
            record.output_value = _as_text(value)[:limit]
            record.output_mime = _text(attrs.get(sc.OUTPUT_MIME_TYPE))

    def _attributes(self, pairs: Sequence[KeyValue]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        limit = self._config.max_attribute_chars
        io_limit = self._config.max_io_chars
        for pair in pairs[: self._config.max_attributes]:
            key = pair.key
            any_value = pair.value
            which = any_value.WhichOneof("value")
            value: Any
            if which == "string_value":
                value = any_value.string_value
                if len(value) > limit:
                    value = value[: io_limit if key in _IO_KEYS else limit]
            elif which == "int_value":
                value = any_value.int_value
            else:
                value = _any_value(any_value, depth=0)
                if isinstance(value, str):
                    value = value[: io_limit if key in _IO_KEYS else limit]
            out[key if len(key) <= 256 else key[:256]] = value
        return out


def _service_and_project(resource: Mapping[str, Any]) -> tuple[str, str]:
    service = _text(resource.get(n.SERVICE_NAME)) or "unknown_service"
    return service, _first_text(resource, n.PROJECT_NAMES) or service


def _any_value(value: AnyValue, depth: int) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        if depth > 8:
            return None
        return [_any_value(v, depth + 1) for v in value.array_value.values[:1024]]
    if which == "kvlist_value":
        if depth > 8:
            return None
        return {kv.key: _any_value(kv.value, depth + 1) for kv in value.kvlist_value.values[:256]}
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which == "double_value" and not math.isfinite(value.double_value):
        return str(value.double_value)
    return getattr(value, which)


def _kind(attrs: Mapping[str, Any], framework: bool = False) -> str:
    """The span's plyra kind or, for a span of no agent kind, the transport it carries, or
    FRAMEWORK for a web framework's internal step."""
    kind = _agent_kind(attrs)
    if kind is not sc.SpanKind.UNKNOWN:
        return kind.value
    for keys, transport in _TRANSPORT_KINDS:
        if any(key in attrs for key in keys):
            return transport
    return FRAMEWORK_KIND if framework else kind.value


def _agent_kind(attrs: Mapping[str, Any]) -> sc.SpanKind:
    plyra = attrs.get(sc.PLYRA_SPAN_KIND)
    if isinstance(plyra, str):
        known = _PLYRA_KINDS.get(plyra)
        if known is not None:
            return known
        try:
            return sc.coerce_kind(plyra)
        except ValueError:
            pass
    oi = attrs.get(sc.OI_SPAN_KIND)
    if isinstance(oi, str):
        return sc.plyra_kind_from_openinference(oi)
    traceloop = attrs.get(n.TRACELOOP_SPAN_KIND)
    if isinstance(traceloop, str) and traceloop in _TRACELOOP_KINDS:
        return _TRACELOOP_KINDS[traceloop]
    operation = attrs.get(sc.GEN_AI_OPERATION)
    if isinstance(operation, str) and operation in _GEN_AI_OPERATIONS:
        return _GEN_AI_OPERATIONS[operation]
    if n.LLM_REQUEST_TYPE in attrs or any(key in attrs for key in _MODEL_KEYS):
        return sc.SpanKind.LLM
    return sc.SpanKind.UNKNOWN


def _span_cost(attrs: Mapping[str, Any]) -> float | None:
    total = _number(attrs.get(sc.LLM_COST_TOTAL))
    if total is None:
        total = _number(attrs.get(n.GEN_AI_USAGE_COST))
    if total is None:
        prompt = _number(attrs.get(sc.LLM_COST_PROMPT))
        completion = _number(attrs.get(sc.LLM_COST_COMPLETION))
        if prompt is not None or completion is not None:
            total = (prompt or 0.0) + (completion or 0.0)
    return total


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _first_text(attrs: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value if isinstance(value, str) else str(value)
    return None


def _first_int(attrs: Mapping[str, Any], keys: Sequence[str]) -> int | None:
    for key in keys:
        raw = attrs.get(key)
        if raw is None:
            continue
        value = _number(raw)
        if value is not None and value >= 0:
            return int(value)
    return None


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
