"""The JSON API under /api/v1 for the web UI: traces, spans, flamegraphs, graph, cost, stream.

Handlers parse and validate query parameters, call storage in a worker thread and return JSON in
which ``<``, ``>`` and ``&`` are escaped, so no value can be mistaken for markup.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Final, cast, get_args

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from plyra_trace.collector.model import CostDimension, Page, TraceFilter, Weight
from plyra_trace.collector.runtime import Runtime
from plyra_trace.collector.tree import flamegraph, order_tree

_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_NS: Final = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
_ID: Final = re.compile(r"^[0-9a-f]{16,32}$")
_MAX_LIMIT: Final = 500
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
    value = request.query_params.get(name)
    return value if value not in (None, "") else None


def _int(request: Request, name: str, default: int | None = None) -> int | None:
    value = _param(request, name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def _float(request: Request, name: str) -> float | None:
    value = _param(request, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None


def _limit(request: Request, default: int = 50) -> int:
    limit = _int(request, "limit", default)
    assert limit is not None
    if not 1 <= limit <= _MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {_MAX_LIMIT}")
    return limit


def _time(request: Request, name: str) -> int | None:
    """A time given as unix nanoseconds or as an ISO 8601 string, in nanoseconds."""
    value = _param(request, name)
    if value is None:
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be unix nanoseconds or an ISO 8601 time") from None
    return int(moment.timestamp() * 1e9)


def _window(request: Request) -> tuple[int | None, int | None]:
    """``since``/``until`` (ns or ISO 8601), or ``last`` (e.g. 15m, 24h, 7d) back from now."""
    since, until = _time(request, "since"), _time(request, "until")
    last = _param(request, "last")
    if last is not None:
        match = _DURATION.match(last)
        if match is None:
            raise BadRequest("last must look like 500ms, 30s, 15m, 24h or 7d")
        since = time.time_ns() - int(float(match.group(1)) * _UNIT_NS[match.group(2)])
    return since, until


def _choice(request: Request, name: str, options: tuple[str, ...], default: str) -> str:
    value = _param(request, name) or default
    if value not in options:
        raise BadRequest(f"{name} must be one of {', '.join(options)}")
    return value


def _trace_id(value: str) -> str:
    value = value.lower()
    if not _ID.match(value):
        raise BadRequest("ids are lowercase hex")
    return value


def _page(page: Page) -> dict[str, Any]:
    return {"items": page.items, "next_cursor": page.next_cursor}


async def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except ValueError as error:
        raise BadRequest(str(error)) from None


def _filter(request: Request) -> TraceFilter:
    since, until = _window(request)
    status = _param(request, "status")
    if status not in (None, "ok", "error"):
        raise BadRequest("status must be ok or error")
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
        min_duration_ns=int(min_ms * 1e6) if min_ms is not None else None,
        min_cost=_float(request, "min_cost"),
        text=(_param(request, "q") or "")[:200] or None,
    )


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
        _trace_id(request.path_params["span_id"]),
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


async def facets(request: Request) -> JSON:
    """Projects, services, agents and models seen in a window: the choices for each filter."""
    since, until = _window(request)
    return JSON(await _call(_runtime(request).storage.facets, since, until))


async def health(request: Request) -> JSON:
    """Liveness plus the stored span count."""
    return JSON({"status": "ok", "spans": await _call(_runtime(request).storage.count_spans)})


async def sampling(request: Request) -> JSON:
    """The active tail-sampling policy and kept, dropped and pending counts, with bytes freed."""
    runtime = _runtime(request)
    stats = await _call(runtime.storage.sampling_stats)
    return JSON({"policy": runtime.config.sampling.describe(), **stats})


async def stream(request: Request) -> StreamingResponse:
    """Server-Sent Events: ``spans``, ``trace`` and ``edge`` events as writes commit."""
    broadcaster = _runtime(request).broadcaster
    queue = broadcaster.subscribe()

    async def _events() -> AsyncIterator[str]:
        try:
            yield "event: ready\ndata: {}\n\n"
            while True:
                try:
                    kind, data = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {kind}\ndata: {dumps(data)}\n\n"
        finally:
            broadcaster.unsubscribe(queue)

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
    Route("/api/v1/facets", facets),
    Route("/api/v1/sampling", sampling),
    Route("/api/v1/stream", stream),
]
