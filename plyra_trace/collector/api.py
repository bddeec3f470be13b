"""The JSON API under /api/v1 for the web UI: traces, spans, flamegraphs, graph, cost, stream.

Handlers parse and validate query parameters, call storage in a worker thread and return JSON in
which ``<``, ``>`` and ``&`` are escaped, so no value can be mistaken for markup.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast, get_args

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from plyra_trace.collector.auth import AUTHENTICATED
from plyra_trace.collector.model import CostDimension, GuardFilter, Page, TraceFilter, Weight
from plyra_trace.collector.runtime import Runtime
from plyra_trace.collector.tree import flamegraph, order_tree

# What the API accepts, as patterns both ``re`` (fullmatch) and JSON Schema read the same way;
# openapi.py declares exactly these, so the document cannot drift from the checks.
TRACE_ID_PATTERN: Final = "^[0-9a-fA-F]{32}$"
SPAN_ID_PATTERN: Final = "^[0-9a-fA-F]{16}$"
DURATION_PATTERN: Final = "^([0-9]+(?:[.][0-9]+)?)(ms|s|m|h|d)$"
NANOS_PATTERN: Final = "^-?[0-9]+$"
RFC3339_PATTERN: Final = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?"
    "([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
INTEGER_PATTERN: Final = "^-?[0-9]+$"
NUMBER_PATTERN: Final = "^-?[0-9]+([.][0-9]+)?([eE][+-]?[0-9]+)?$"
MAX_LIMIT: Final = 500
STATUSES: Final = ("ok", "error")
_UNIT_NS: Final = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
_INT64: Final = (-(2**63), 2**63 - 1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
KEEPALIVE_SECONDS: Final = 15.0


class BadRequest(Exception):
    """A query parameter the API cannot use; answered with 400 and the reason."""


class JSON(Response):
    """JSON with markup characters escaped and no NaN (the UI renders text only)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Serialise compactly, escaping <, > and & as unicode escapes."""
        return dumps(content).encode("utf-8")


def dumps(content: Any) -> str:
    """Compact JSON with <, > and & escaped (valid JSON, inert in HTML)."""
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


def _param(request: Request, name: str) -> str | None:
    """A free-text parameter; an empty value counts as absent."""
    value = request.query_params.get(name)
    return value if value not in (None, "") else None


def _typed(request: Request, name: str, pattern: str, expected: str) -> str | None:
    """A typed parameter: absent, or matching ``pattern`` (an empty value is malformed too)."""
    value = request.query_params.get(name)
    if value is None:
        return None
    if re.fullmatch(pattern, value) is None:
        raise BadRequest(f"{name} must be {expected}")
    return value


def _clamp_ns(value: float) -> int:
    """Nanoseconds within a signed 64-bit column, whatever the caller asked for."""
    low, high = _INT64
    if math.isnan(value):
        raise BadRequest("not a number")
    return int(max(low, min(high, value)))


def _int(request: Request, name: str, default: int | None = None) -> int | None:
    value = _typed(request, name, INTEGER_PATTERN, "an integer")
    return default if value is None else int(value)


def _float(request: Request, name: str) -> float | None:
    value = _typed(request, name, NUMBER_PATTERN, "a number")
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        raise BadRequest(f"{name} must be a finite number")
    return number


def _limit(request: Request, default: int = 50) -> int:
    limit = _int(request, "limit", default)
    assert limit is not None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _time(request: Request, name: str) -> int | None:
    """A time given as unix nanoseconds or as an RFC 3339 time, in nanoseconds."""
    value = request.query_params.get(name)
    if value is None:
        return None
    if re.fullmatch(NANOS_PATTERN, value):
        return _clamp_ns(int(value))
    if re.fullmatch(RFC3339_PATTERN, value) is None:
        raise BadRequest(f"{name} must be unix nanoseconds or an RFC 3339 time")
    leap = value[17:19] == "60"  # a leap second is the next second's start
    text = value[:17] + "59" + value[19:] if leap else value
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} is not a valid time") from None
    micros = (moment - _EPOCH) // timedelta(microseconds=1) + (10**6 if leap else 0)
    return _clamp_ns(micros * 1000)


def _window(request: Request) -> tuple[int | None, int | None]:
    """``since``/``until`` (ns or RFC 3339), or ``last`` (e.g. 15m, 24h, 7d) back from now."""
    since, until = _time(request, "since"), _time(request, "until")
    last = _typed(request, "last", DURATION_PATTERN, "a duration like 500ms, 30s, 15m, 24h or 7d")
    if last is not None:
        match = re.fullmatch(DURATION_PATTERN, last)
        assert match is not None
        since = _clamp_ns(time.time_ns() - float(match.group(1)) * _UNIT_NS[match.group(2)])
    return since, until


def _choice(
    request: Request, name: str, options: tuple[str, ...], default: str | None
) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return default
    if value not in options:
        raise BadRequest(f"{name} must be one of {', '.join(options)}")
    return value


def _trace_id(value: str) -> str:
    if re.fullmatch(TRACE_ID_PATTERN, value) is None:
        raise BadRequest("a trace id is 32 hex digits")
    return value.lower()


def _span_id(value: str) -> str:
    if re.fullmatch(SPAN_ID_PATTERN, value) is None:
        raise BadRequest("a span id is 16 hex digits")
    return value.lower()


def _page(page: Page) -> dict[str, Any]:
    return {"items": page.items, "next_cursor": page.next_cursor}


async def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except ValueError as error:
        raise BadRequest(str(error)) from None


def _filter(request: Request) -> TraceFilter:
    since, until = _window(request)
    status = _choice(request, "status", STATUSES, None)  # absent: any status
    min_ms = _float(request, "min_duration_ms")
    return TraceFilter(
        project=_param(request, "project"),
        service=_param(request, "service"),
        agent=_param(request, "agent"),
        session_id=_param(request, "session"),
        user_id=_param(request, "user"),
        status=cast(Any, status),
        since_ns=since,
        until_ns=until,
        min_duration_ns=_clamp_ns(min_ms * 1e6) if min_ms is not None else None,
        min_cost=_float(request, "min_cost"),
        text=(_param(request, "q") or "")[:200] or None,
        guard_policy=_param(request, "guard_policy"),
        guard_action=_param(request, "guard_action"),
        running=_flag(request, "running"),
        abandoned=_flag(request, "abandoned"),
    )


def _flag(request: Request, name: str) -> bool | None:
    value = _choice(request, name, ("true", "false"), None)
    return None if value is None else value == "true"


async def list_traces(request: Request) -> JSON:
    """Trace summaries, newest first, filtered, with a cursor for the next page."""
    page = await _call(
        _runtime(request).storage.list_traces,
        _filter(request),
        _param(request, "cursor"),
        _limit(request),
    )
    return JSON(_page(page))


async def get_trace(request: Request) -> JSON:
    """A trace's summary and spans in tree order (depth-first, with depth and order)."""
    trace = await _call(_runtime(request).storage.get_trace, _trace_id(request.path_params["id"]))
    if trace is None:
        return JSON({"error": "trace not found"}, status_code=404)
    trace["spans"] = order_tree(trace["spans"])
    return JSON(trace)


async def get_span(request: Request) -> JSON:
    """One span with its attributes, events, resource and full input/output."""
    span = await _call(
        _runtime(request).storage.get_span,
        _trace_id(request.path_params["id"]),
        _span_id(request.path_params["span_id"]),
    )
    if span is None:
        return JSON({"error": "span not found"}, status_code=404)
    return JSON(span)


def _weight(request: Request) -> Weight:
    return cast(Weight, _choice(request, "weight", get_args(Weight), "duration"))


async def trace_flamegraph(request: Request) -> JSON:
    """Flamegraph of one trace, weighted by duration (ns), cost (USD) or tokens."""
    trace_id = _trace_id(request.path_params["id"])
    weight = _weight(request)
    spans = await _call(_runtime(request).storage.trace_spans, [trace_id])
    if not spans:
        return JSON({"error": "no spans: unknown trace, or sampled out"}, status_code=404)
    return JSON(flamegraph(spans, weight))


async def aggregate_flamegraph(request: Request) -> JSON:
    """Flamegraph merged over recent traces with a given root name and/or containing an agent."""
    root_name, agent = _param(request, "root_name"), _param(request, "agent")
    if root_name is None and agent is None:
        raise BadRequest("give root_name or agent")
    weight = _weight(request)
    since, until = _window(request)
    limit = _limit(request, default=200)
    storage = _runtime(request).storage

    def _build() -> dict[str, Any]:
        ids = storage.find_trace_ids(
            root_name=root_name, agent=agent, since_ns=since, until_ns=until, limit=limit
        )
        spans = storage.trace_spans(ids)
        if agent is not None and root_name is None:
            spans = _agent_subtrees(spans, agent)
        return flamegraph(spans, weight, traces=len(ids))

    return JSON(await _call(_build))


def _agent_subtrees(spans: list[dict[str, Any]], agent: str) -> list[dict[str, Any]]:
    """Only the spans under the topmost spans attributed to ``agent`` (those become roots)."""
    by_key = {(s["trace_id"], s["span_id"]): s for s in spans}
    keep = []
    for span in spans:
        if span["agent"] != agent:
            continue
        parent = by_key.get((span["trace_id"], span["parent_id"]))
        if parent is None or parent["agent"] != agent:
            span = {**span, "parent_id": None}
        keep.append(span)
    return keep


async def agents_graph(request: Request) -> JSON:
    """Agents (nodes) and handoffs (edges with counts, errors, latency, cost) in a window."""
    since, until = _window(request)
    return JSON(await _call(_runtime(request).storage.agents_graph, since, until))


async def cost(request: Request) -> JSON:
    """Cost and tokens by model, agent, session, user, service, project, day or trace."""
    by = cast(CostDimension, _choice(request, "by", get_args(CostDimension), "model"))
    since, until = _window(request)
    rows = await _call(
        _runtime(request).storage.cost_breakdown, by, since, until, _limit(request, 100)
    )
    return JSON({"by": by, "currency": "USD", "items": rows})


async def list_sessions(request: Request) -> JSON:
    """Sessions, newest first, with trace counts, cost and time span."""
    since, until = _window(request)
    page = await _call(
        _runtime(request).storage.list_sessions,
        since,
        until,
        _param(request, "cursor"),
        _limit(request),
    )
    return JSON(_page(page))


async def get_session(request: Request) -> JSON:
    """One session's traces (newest first, paginated)."""
    session = request.path_params["session_id"]
    page = await _call(
        _runtime(request).storage.list_traces,
        TraceFilter(session_id=session),
        _param(request, "cursor"),
        _limit(request),
    )
    return JSON({"session_id": session, **_page(page)})


async def guards(request: Request) -> JSON:
    """Guard decisions by policy and action (count, agents, providers, p95 latency, recent traces),
    a time series per policy and action, and the most blocked agents; filter by project, agent,
    provider and time window."""
    since, until = _window(request)
    where = GuardFilter(
        project=_param(request, "project"),
        agent=_param(request, "agent"),
        provider=_param(request, "provider"),
        since_ns=since,
        until_ns=until,
    )
    return JSON(await _call(_runtime(request).storage.guards, where, _limit(request, 100)))


async def session_guards(request: Request) -> JSON:
    """A session's guard decisions across all its traces and services, in time order."""
    session = request.path_params["session_id"]
    items = await _call(_runtime(request).storage.session_guards, session, _limit(request, 500))
    return JSON({"session_id": session, "items": items})


async def facets(request: Request) -> JSON:
    """Projects, services, agents and models seen in a window: the choices for each filter."""
    since, until = _window(request)
    return JSON(await _call(_runtime(request).storage.facets, since, until))


async def health(request: Request) -> JSON:
    """Liveness (public); for those who may read data also the stored span count, the request
    bytes waiting to be stored and how many requests were throttled so far."""
    if not request.scope.get(AUTHENTICATED, True):
        return JSON({"status": "ok"})
    runtime = _runtime(request)
    spans = await _call(runtime.storage.count_spans)
    budget = runtime.budget
    return JSON(
        {"status": "ok", "spans": spans, "inflight_bytes": budget.held, "throttled": budget.refused}
    )


async def sampling(request: Request) -> JSON:
    """The active tail-sampling policy and kept, dropped and pending counts, with bytes freed."""
    runtime = _runtime(request)
    stats = await _call(runtime.storage.sampling_stats)
    return JSON({"policy": runtime.config.sampling.describe(), **stats})


async def stream(request: Request) -> StreamingResponse:
    """Server-Sent Events: ``ready``, then ``update`` events (spans committed, the latest
    summary of each changed trace and edge), at most one per the broadcaster's interval."""
    broadcaster = _runtime(request).broadcaster
    listener = broadcaster.subscribe()

    async def _events() -> AsyncIterator[str]:
        try:
            yield "event: ready\ndata: {}\n\n"
            while True:
                try:
                    await asyncio.wait_for(listener.ready.wait(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                update = listener.take()
                if update is not None:
                    yield f"event: update\ndata: {dumps(update)}\n\n"
                await asyncio.sleep(broadcaster.interval)
        finally:
            broadcaster.unsubscribe(listener)

    return StreamingResponse(
        _events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


ROUTES: Final = [
    Route("/api/v1/health", health),
    Route("/api/v1/traces", list_traces),
    Route("/api/v1/traces/{id}", get_trace),
    Route("/api/v1/traces/{id}/spans/{span_id}", get_span),
    Route("/api/v1/traces/{id}/flamegraph", trace_flamegraph),
    Route("/api/v1/flamegraph", aggregate_flamegraph),
    Route("/api/v1/agents/graph", agents_graph),
    Route("/api/v1/cost", cost),
    Route("/api/v1/sessions", list_sessions),
    Route("/api/v1/sessions/{session_id}", get_session),
    Route("/api/v1/sessions/{session_id}/guards", session_guards),
    Route("/api/v1/guards", guards),
    Route("/api/v1/facets", facets),
    Route("/api/v1/sampling", sampling),
    Route("/api/v1/stream", stream),
]
