"""The OpenAPI 3.1 document of the collector: every operation, what it accepts and every answer.

Parameters are built by one helper per kind (free text, enum, integer, number, time, duration, id)
from the same patterns and limits ``api.py`` enforces, and error answers are shared components, so
declaring a new operation is one entry in ``OPERATIONS``. Routes without an entry still appear,
with their docstring and the answers every route can give.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, get_args

from starlette.routing import BaseRoute, Route

from plyra_trace._version import VERSION
from plyra_trace.collector import api
from plyra_trace.collector.model import CostDimension, Weight

Schema = dict[str, Any]

# ---- parameters, one helper per kind -------------------------------------------------------------


def _parameter(name: str, description: str, schema: Schema, *, where: str = "query") -> Schema:
    """A parameter; path parameters are always required, query parameters here never."""
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


def text(name: str, description: str) -> Schema:
    """A free-text filter; an empty value is the same as leaving it out."""
    return _parameter(name, description, {"type": "string"})


def enum(name: str, options: Sequence[str], description: str, default: str | None = None) -> Schema:
    """One of fixed values."""
    schema: Schema = {"type": "string", "enum": list(options)}
    if default is not None:
        schema["default"] = default
    return _parameter(name, description, schema)


def integer(name: str, description: str, *, minimum: int, maximum: int, default: int) -> Schema:
    """A bounded integer."""
    schema = {"type": "integer", "minimum": minimum, "maximum": maximum, "default": default}
    return _parameter(name, description, schema)


def number(name: str, description: str) -> Schema:
    """A finite decimal number."""
    return _parameter(name, description, {"type": "number"})


def moment(name: str, description: str) -> Schema:
    """A time: unix nanoseconds or RFC 3339."""
    schema = {
        "anyOf": [
            {"type": "string", "pattern": api.NANOS_PATTERN},
            {"type": "string", "format": "date-time", "pattern": api.RFC3339_PATTERN},
        ]
    }
    return _parameter(name, f"{description} (unix nanoseconds or RFC 3339)", schema)


def duration(name: str, description: str) -> Schema:
    """A duration such as 500ms, 30s, 15m, 24h or 7d."""
    return _parameter(name, description, {"type": "string", "pattern": api.DURATION_PATTERN})


def path_id(name: str, pattern: str, description: str) -> Schema:
    """A hex id in the path (either case)."""
    return _parameter(name, description, {"type": "string", "pattern": pattern}, where="path")


def path_text(name: str, description: str) -> Schema:
    """A free-text path segment."""
    return _parameter(name, description, {"type": "string", "minLength": 1}, where="path")


def window() -> list[Schema]:
    """``since``/``until`` or ``last``: the time window of a query."""
    return [
        moment("since", "Only what started at or after this time"),
        moment("until", "Only what started before this time"),
        duration("last", "Window back from now (replaces since), e.g. 15m, 24h, 7d"),
    ]


def page(default_limit: int) -> list[Schema]:
    """``cursor`` and ``limit`` of a paginated list."""
    return [
        text("cursor", "The next_cursor of the previous page"),
        integer("limit", "Items per page", minimum=1, maximum=api.MAX_LIMIT, default=default_limit),
    ]


def one_of_required(name: str, properties: dict[str, str]) -> Schema:
    """Query keys of which at least one must be given (non-empty): an exploded object parameter."""
    return {
        "name": name,
        "in": "query",
        "required": True,
        "style": "form",
        "explode": True,
        "description": f"Give at least one of {', '.join(properties)}",
        "schema": {
            "type": "object",
            "properties": {
                key: {"type": "string", "description": text} for key, text in properties.items()
            },
            "anyOf": [
                {"required": [key], "properties": {key: {"minLength": 1}}} for key in properties
            ],
        },
    }


# ---- answers -------------------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


_COST: Final[Schema] = {"type": ["number", "null"], "description": "USD; null when unpriced"}
_KINDS: Final[dict[str, Schema]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "num": {"type": "number"},
    "bool": {"type": "boolean"},
    "obj": {"type": "object"},
    "objs": _array({"type": "object"}),
    "strs": _array({"type": "string"}),
    "cost": _COST,
}


def _fields(spec: str, required: str = "", **extra: Schema) -> Schema:
    """An object schema from ``"name:kind ..."`` (a trailing ``?`` allows null) plus ``extra``."""
    properties: dict[str, Schema] = {}
    for item in spec.split():
        name, _, kind = item.partition(":")
        schema = _KINDS[kind.rstrip("?")]
        properties[name] = {"type": [schema["type"], "null"]} if kind.endswith("?") else schema
    return {"type": "object", "required": required.split(), "properties": {**properties, **extra}}


def _page_of(item: str, spec: str = "", required: str = "") -> Schema:
    """One page of a list: ``items`` and the cursor of the next page (null at the end)."""
    return _fields(
        f"next_cursor:str? {spec}", f"items next_cursor {required}", items=_array(_ref(item))
    )


_USAGE: Final = "input_tokens:int? output_tokens:int? total_tokens:int? cost:cost"
_TIMING: Final = "start_ns:int end_ns:int duration_ns:int"

SCHEMAS: Final[dict[str, Schema]] = {
    "Error": _fields("error:str", "error"),
    "OtlpStatus": _fields("code:int message:str", "code message"),
    "TraceSummary": _fields(
        "trace_id:str root_span_id:str? root_name:str root_service:str? complete:bool"
        f" project:str? services:strs agents:strs span_count:int error_count:int {_USAGE}"
        f" unpriced_count:int {_TIMING} session_id:str? user_id:str? sampled:bool?"
        " running:bool abandoned:bool",
        "trace_id root_name status start_ns end_ns duration_ns span_count",
        kept_because={
            "type": ["array", "null"],
            "items": {"type": "string"},
            "description": "why tail sampling kept the trace's spans (e.g. error, guard:block)",
        },
        status={"type": "string", "enum": list(api.STATUSES)},
    ),
    "TracePage": _page_of("TraceSummary"),
    "Sampling": _fields(
        "policy:obj kept:int dropped:int pending:int spans_dropped:int bytes_saved:int",
        "policy kept dropped pending spans_dropped bytes_saved",
    ),
    "Span": _fields(
        f"trace_id:str span_id:str parent_id:str? name:str kind:str otel_kind:str service:str"
        f" start_ns:int end_ns:int? duration_ns:int agent:str? model:str? {_USAGE}"
        " attributes:obj depth:int order:int running:bool abandoned:bool last_heartbeat_ns:int",
        "trace_id span_id parent_id name kind start_ns end_ns duration_ns",
        status={"type": "integer", "description": "0 unset, 1 ok, 2 error"},
    ),
    "Trace": {"allOf": [_ref("TraceSummary"), _fields("", "spans", spans=_array(_ref("Span")))]},
    "SpanDetail": {
        "allOf": [
            _ref("Span"),
            _fields(
                "resource:obj events:objs input_value:str? input_mime:str? output_value:str?"
                " output_mime:str?",
                "attributes resource events",
            ),
        ]
    },
    "FlameNode": _fields(
        "name:str value:num self:num count:int",
        "name value self count children",
        children=_array(_ref("FlameNode")),
    ),
    "Flamegraph": _fields(
        "traces:int",
        "weight traces root",
        weight={"type": "string", "enum": list(get_args(Weight))},
        root=_ref("FlameNode"),
    ),
    "AgentGraph": _fields(
        "",
        "nodes edges",
        nodes=_array(
            _fields("id:str spans:int traces:int errors:int cost:cost tokens:int?", "id traces")
        ),
        edges=_array(
            _fields(
                "from:str to:str protocol:str count:int errors:int avg_ns:int? p95_ns:int?"
                " cost:cost",
                "from to protocol count errors",
            )
        ),
    ),
    "CostReport": _fields(
        "",
        "by currency items",
        by={"type": "string", "enum": list(get_args(CostDimension))},
        currency={"type": "string", "enum": ["USD"]},
        items=_array(
            _fields(
                f"key:str? calls:int traces:int {_USAGE} unpriced:int?", "key total_tokens cost"
            )
        ),
    ),
    "Session": _fields(
        f"session_id:str traces:int spans:int? errors:int? {_USAGE} unpriced:int? first_ns:int"
        " last_start_ns:int last_end_ns:int user_id:str?",
        "session_id traces",
        users={**_KINDS["strs"], "description": "Distinct users of the session's traces"},
    ),
    "SessionPage": _page_of("Session"),
    "SessionTraces": _page_of("TraceSummary", "session_id:str", "session_id"),
    "Facets": _fields(
        "projects:strs services:strs agents:strs models:strs", "projects services agents models"
    ),
    "Guards": _fields(
        "items:objs series:objs bucket_ns:int? blocked_agents:objs",
        "items",
        items={**_KINDS["objs"], "description": "Per (policy, action): count, agents, p95..."},
    ),
    "SessionGuards": _fields("session_id:str items:objs", "session_id items"),
    "Health": _fields("status:str spans:int inflight_bytes:int throttled:int", "status"),
    "SignIn": _fields("key:str", "key"),
    "SessionState": _fields("required:bool signed_in:bool", "signed_in"),
    "OpenAPI": _fields("openapi:str paths:obj", "openapi paths"),
}


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _error(description: str, schema: str = "Error", headers: Schema | None = None) -> Schema:
    response: Schema = {"description": description, "content": _json(_ref(schema))}
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER: Final = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": _KINDS["int"]}
}
RESPONSES: Final[dict[str, Schema]] = {
    "BadRequest": _error("A parameter is malformed or out of range; the body says which"),
    "Unauthorized": _error(
        "A wrong API key, or none where the collector requires one",
        headers={"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    ),
    "NotFound": _error("No such trace, span or route"),
    "Unavailable": _error("The database is unreachable; retry later", headers=_RETRY_AFTER),
    "Misdirected": _error("The Host header names a host this collector does not serve"),
    "Unsupported": _error("The body is not sent as the content type this operation takes"),
    "OtlpBadRequest": _error("The body is not a valid OTLP export", "OtlpStatus"),
    "OtlpTooLarge": _error("The body (or its decompressed size) is over the limit", "OtlpStatus"),
    "OtlpUnsupported": _error(
        "Content-Type is neither application/x-protobuf nor application/json, or the"
        " Content-Encoding is neither gzip nor deflate",
        "OtlpStatus",
    ),
    "OtlpUnavailable": {
        "description": "Busy (the in-flight budget is spent) or storage unavailable; retry later",
        "headers": _RETRY_AFTER,
        "content": _json({"anyOf": [_ref("OtlpStatus"), _ref("Error")]}),
    },
}


_BY_STATUS: Final = {
    "400": "BadRequest",
    "401": "Unauthorized",
    "404": "NotFound",
    "421": "Misdirected",
    "413": "OtlpTooLarge",
    "415": "OtlpUnsupported",
    "503": "Unavailable",
}


def errors(*codes: str, **components: str) -> dict[str, Schema]:
    """Shared error answers: ``errors("400", "404")``; ``errors(**{"400": "OtlpBadRequest"})``."""
    named = {code: _BY_STATUS[code] for code in codes} | components
    return {code: {"$ref": f"#/components/responses/{name}"} for code, name in named.items()}


def json_body(schema: str) -> Schema:
    """A required JSON request body of a named schema."""
    return {"required": True, "content": _json(_ref(schema))}


# ---- operations ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """One declared operation: its parameters, its 200 answer and the errors it can give."""

    parameters: list[Schema] = field(default_factory=list)
    ok: Schema = field(default_factory=lambda: {"description": "OK"})
    responses: dict[str, Schema] = field(default_factory=dict)
    request_body: Schema | None = None


def ok(schema: str) -> Schema:
    """A 200 answer with a JSON body of a named schema."""
    return {"description": "OK", "content": _json(_ref(schema))}


_TRACE_FILTERS: Final = [
    text("project", "Project (resource attribute)"),
    text("service", "A service that took part"),
    text("agent", "An agent that took part"),
    text("session", "Session id"),
    text("user", "User id"),
    enum("status", api.STATUSES, "Only traces with (error) or without (ok) an error span"),
    number("min_duration_ms", "Only traces at least this long, in milliseconds"),
    number("min_cost", "Only traces costing at least this much, in USD"),
    text("q", "Text in the root's or any span's name (first 200 characters)"),
    text("guard_policy", "Only traces with a guard decision under this policy"),
    text("guard_action", "Only traces with a guard decision of this action (allow, block...)"),
    enum("running", ("true", "false"), "Only traces with (true) or without (false) running spans"),
    enum(
        "abandoned",
        ("true", "false"),
        "Only traces with (true) or without (false) spans whose process stopped sending heartbeats",
    ),
]
_TRACE_ID: Final = path_id("id", api.TRACE_ID_PATTERN, "Trace id (32 hex digits)")
_WEIGHT: Final = enum(
    "weight", get_args(Weight), "What a frame's width measures", default="duration"
)
_OTLP: Final = {  # ExportTraceServiceRequest in, ExportTraceServiceResponse out
    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {"type": "object"}},
}

OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    ("POST", "/v1/traces"): Operation(
        ok={"description": "Stored; partial_success counts rejected spans", "content": _OTLP},
        request_body={"required": True, "content": _OTLP},
        responses=errors("413", "415", **{"400": "OtlpBadRequest", "503": "OtlpUnavailable"}),
    ),
    ("POST", "/v1/live"): Operation(
        ok={"description": "Stored (records of spans still running)", "content": _OTLP},
        request_body={"required": True, "content": _OTLP},
        responses=errors("413", "415", **{"400": "OtlpBadRequest", "503": "OtlpUnavailable"}),
    ),
    ("GET", "/api/v1/health"): Operation(ok=ok("Health")),
    ("GET", "/api/v1/openapi.json"): Operation(ok=ok("OpenAPI")),
    ("GET", "/api/v1/traces"): Operation(
        [*_TRACE_FILTERS, *window(), *page(50)], ok("TracePage"), errors("400")
    ),
    ("GET", "/api/v1/traces/{id}"): Operation([_TRACE_ID], ok("Trace"), errors("400", "404")),
    ("GET", "/api/v1/traces/{id}/spans/{span_id}"): Operation(
        [_TRACE_ID, path_id("span_id", api.SPAN_ID_PATTERN, "Span id (16 hex digits)")],
        ok("SpanDetail"),
        errors("400", "404"),
    ),
    ("GET", "/api/v1/traces/{id}/flamegraph"): Operation(
        [_TRACE_ID, _WEIGHT], ok("Flamegraph"), errors("400", "404")
    ),
    ("GET", "/api/v1/flamegraph"): Operation(
        [
            one_of_required(
                "target",
                {
                    "root_name": "Traces whose root span has this name",
                    "agent": "Traces containing this agent (only its subtrees are merged)",
                },
            ),
            _WEIGHT,
            *window(),
            integer(
                "limit", "Newest traces to merge", minimum=1, maximum=api.MAX_LIMIT, default=200
            ),
        ],
        ok("Flamegraph"),
        errors("400"),
    ),
    ("GET", "/api/v1/agents/graph"): Operation(window(), ok("AgentGraph"), errors("400")),
    ("GET", "/api/v1/cost"): Operation(
        [
            enum("by", get_args(CostDimension), "What to group by", default="model"),
            *window(),
            integer("limit", "Groups", minimum=1, maximum=api.MAX_LIMIT, default=100),
        ],
        ok("CostReport"),
        errors("400"),
    ),
    ("GET", "/api/v1/sessions"): Operation(
        [*window(), *page(50)], ok("SessionPage"), errors("400")
    ),
    ("GET", "/api/v1/sessions/{session_id}"): Operation(
        [path_text("session_id", "Session id"), *page(50)], ok("SessionTraces"), errors("400")
    ),
    ("GET", "/api/v1/facets"): Operation(window(), ok("Facets"), errors("400")),
    ("GET", "/api/v1/sampling"): Operation([], ok("Sampling")),
    ("GET", "/api/v1/guards"): Operation(
        [
            text("project", "Project"),
            text("agent", "Agent that asked the guard"),
            text("provider", "Guard library or service"),
            *window(),
            integer("limit", "Groups", minimum=1, maximum=api.MAX_LIMIT, default=100),
        ],
        ok("Guards"),
        errors("400"),
    ),
    ("GET", "/api/v1/sessions/{session_id}/guards"): Operation(
        [
            path_text("session_id", "Session id"),
            integer("limit", "Decisions", minimum=1, maximum=api.MAX_LIMIT, default=500),
        ],
        ok("SessionGuards"),
        errors("400"),
    ),
    ("GET", "/api/v1/session"): Operation(ok=ok("SessionState")),
    ("POST", "/api/v1/session"): Operation(
        ok={**ok("SessionState"), "headers": {"Set-Cookie": {"schema": {"type": "string"}}}},
        responses=errors("400", **{"415": "Unsupported"}),
        request_body=json_body("SignIn"),
    ),
    ("DELETE", "/api/v1/session"): Operation(ok=ok("SessionState")),
    ("GET", "/api/v1/stream"): Operation(
        [],
        {
            "description": "Server-Sent Events (ready, then coalesced update events) until the"
            " client leaves",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    ),
}

_SECURITY: Final = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}


EVERY_OPERATION: Final = ("401", "421", "503")
"""Answers any route under /api and /v1 can give from the middleware (a wrong key; a Host this
collector does not serve; the database lost), unless its entry declares its own for the status."""


def _operation(route: Route, method: str) -> Schema:
    declared = OPERATIONS.get((method, route.path), Operation())
    doc = (route.endpoint.__doc__ or "").strip().splitlines()
    out: Schema = {
        "summary": doc[0] if doc else route.path,
        "operationId": method.lower() + re.sub(r"[^a-z0-9]+", "_", route.path),
        "parameters": declared.parameters,
        # Keys are optional unless the collector requires them; a presented key is always checked.
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "responses": {"200": declared.ok, **errors(*EVERY_OPERATION), **declared.responses},
    }
    if declared.request_body is not None:
        out["requestBody"] = declared.request_body
    return out


def openapi(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document for the JSON API under /api/v1 and OTLP ingest at POST /v1/traces
    (and /v1/live)."""
    paths: dict[str, Any] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith(("/api/", "/v1/")):
            continue
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            paths.setdefault(route.path, {})[method.lower()] = _operation(route, method)
    return {
        "openapi": "3.1.0",
        "info": {"title": "plyra-trace collector", "version": VERSION},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "responses": RESPONSES, "securitySchemes": _SECURITY},
    }
