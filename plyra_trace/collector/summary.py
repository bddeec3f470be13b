"""Derive a trace's summary, per-span agent attribution and handoff edges from all its spans.

Pure functions over plain rows, so any storage backend recomputes them the same way inside its write
transaction, and the result is right whichever span of the trace arrived last.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from plyra_trace.collector.model import STATUS_ERROR, Row


@dataclass(slots=True)
class TraceDerivation:
    """Everything recomputed for one trace: its summary, span agents and handoff rows."""

    summary: Row
    agents: dict[str, str | None] = field(default_factory=dict)
    """Effective agent per span id (its own, else its nearest ancestor's)."""
    handoffs: list[Row] = field(default_factory=list)
    usage: list[Row] = field(default_factory=list)
    """Roll-up rows per (day, agent, service, model, provider): what cost and graph queries read."""


def repeats_parent_usage(span: Row, parent: Row | None) -> bool:
    """True when a span's usage is its parent's again (one LLM call instrumented twice).

    A framework or instrumentor span around an SDK that traces itself (OpenInference's Anthropic
    span around anthropic's own, LangChain's around OpenAI's) reports the same tokens twice; only
    the outer span is counted.
    """
    if parent is None or span["total_tokens"] is None or parent["total_tokens"] is None:
        return False
    return bool(
        span["input_tokens"] == parent["input_tokens"]
        and span["output_tokens"] == parent["output_tokens"]
    )


_NO_USAGE: Final = {"input_tokens": None, "output_tokens": None, "total_tokens": None, "cost": None}


def derive(trace_id: str, spans: Sequence[Row], running: Collection[str] = ()) -> TraceDerivation:
    """Summarise one trace; ``spans`` need the hot columns of :class:`SpanRecord`.

    Spans whose ids are in ``running`` (still open) place the root and pass their agent down,
    but count in no total, usage roll-up or handoff edge until they finish.
    """
    by_id = {span["span_id"]: span for span in spans}
    spans = [
        {**span, **_NO_USAGE}
        if repeats_parent_usage(span, by_id.get(span["parent_id"]) if span["parent_id"] else None)
        else span
        for span in spans
    ]
    by_id = {span["span_id"]: span for span in spans}
    children: dict[str, list[Row]] = {}
    for span in spans:
        parent = span["parent_id"]
        if parent is not None and parent in by_id:
            children.setdefault(parent, []).append(span)
    roots = sorted(
        (s for s in spans if s["parent_id"] is None or s["parent_id"] not in by_id),
        key=lambda s: (s["parent_id"] is not None, s["start_ns"], s["span_id"]),
    )
    agents: dict[str, str | None] = {}
    subtree_cost: dict[str, float | None] = {}
    for root in roots:
        _walk(root, None, children, agents, subtree_cost)
    root = roots[0] if roots else spans[0]
    done = [span for span in spans if span["span_id"] not in running] if running else spans
    summary = _summary(trace_id, spans, root, agents)  # running spans carry no usage
    summary["span_count"] = len(done)
    summary["running_spans"] = len(spans) - len(done)
    summary["running"] = len(done) < len(spans)
    handoffs = [
        _handoff(trace_id, span, by_id, agents, subtree_cost)
        for span in done
        if span["handoff_to"] is not None
    ]
    usage = _usage(trace_id, done, agents)
    return TraceDerivation(summary=summary, agents=agents, handoffs=handoffs, usage=usage)


_DAY_NS = 86_400 * 10**9


def _usage(trace_id: str, spans: Sequence[Row], agents: dict[str, str | None]) -> list[Row]:
    """Group a trace's spans by day, effective agent, service, model and provider."""
    groups: dict[tuple[Any, ...], Row] = {}
    for span in spans:
        key = (
            span["start_ns"] // _DAY_NS,
            agents.get(span["span_id"], span["own_agent"]),
            span["service"],
            span["model"],
            span["provider"],
        )
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "trace_id": trace_id,
                "day": key[0],
                "start_ns": span["start_ns"],
                "agent": key[1],
                "service": key[2],
                "project": span["project"],
                "model": key[3],
                "provider": key[4],
                "spans": 0,
                "errors": 0,
                "llm_calls": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "total_tokens": 0,
                "cost": None,
                "unpriced": 0,
            }
        group["spans"] += 1
        group["start_ns"] = min(group["start_ns"], span["start_ns"])
        if span["status"] == STATUS_ERROR:
            group["errors"] += 1
        cost, tokens = span["cost"], span["total_tokens"]
        if cost is None and tokens is None:
            continue
        group["llm_calls"] += 1
        group["input_tokens"] += span["input_tokens"] or 0
        group["output_tokens"] += span["output_tokens"] or 0
        group["total_tokens"] += tokens or 0
        if cost is not None:
            group["cost"] = cost + (group["cost"] or 0.0)
        elif span["model"]:
            group["unpriced"] += 1
    return list(groups.values())


def _walk(
    root: Row,
    inherited: str | None,
    children: dict[str, list[Row]],
    agents: dict[str, str | None],
    subtree_cost: dict[str, float | None],
) -> None:
    """Iterative walk: effective agents flow down, subtree cost flows up (no recursion)."""
    stack: list[tuple[Row, str | None, bool]] = [(root, inherited, False)]
    while stack:
        span, parent_agent, done = stack.pop()
        span_id = span["span_id"]
        if done:
            total = span["cost"]
            for child in children.get(span_id, ()):
                child_cost = subtree_cost.get(child["span_id"])
                if child_cost is not None:
                    total = child_cost if total is None else total + child_cost
            subtree_cost[span_id] = total
            continue
        if span_id in agents:
            continue
        agent = span["own_agent"] or parent_agent
        agents[span_id] = agent
        stack.append((span, parent_agent, True))
        for child in children.get(span_id, ()):
            stack.append((child, agent, False))


def _summary(trace_id: str, spans: Sequence[Row], root: Row, agents: dict[str, Any]) -> Row:
    priced = [s["cost"] for s in spans if s["cost"] is not None]
    start = min(s["start_ns"] for s in spans)
    end = max(s["end_ns"] for s in spans)
    errors = sum(1 for s in spans if s["status"] == STATUS_ERROR)
    return {
        "trace_id": trace_id,
        "root_span_id": root["span_id"],
        "root_name": root["name"],
        "root_service": root["service"],
        "complete": root["parent_id"] is None,
        "project": root["project"],
        "services": sorted({s["service"] for s in spans}),
        "agents": sorted({a for a in agents.values() if a is not None}),
        "span_count": len(spans),
        "error_count": errors,
        "status": "error" if errors else "ok",
        "input_tokens": sum(s["input_tokens"] or 0 for s in spans),
        "output_tokens": sum(s["output_tokens"] or 0 for s in spans),
        "total_tokens": sum(s["total_tokens"] or 0 for s in spans),
        "cost": sum(priced) if priced else None,
        "unpriced_count": sum(
            1 for s in spans if s["cost"] is None and s["model"] and s["total_tokens"] is not None
        ),
        "start_ns": start,
        "end_ns": end,
        "duration_ns": max(0, end - start),
        "session_id": root["session_id"] or _first(spans, "session_id"),
        "user_id": root["user_id"] or _first(spans, "user_id"),
    }


def _first(spans: Sequence[Row], key: str) -> Any:
    for span in sorted(spans, key=lambda s: s["start_ns"]):
        if span[key] is not None:
            return span[key]
    return None


def _handoff(
    trace_id: str,
    span: Row,
    by_id: dict[str, Row],
    agents: dict[str, str | None],
    subtree_cost: dict[str, float | None],
) -> Row:
    parent = by_id.get(span["parent_id"]) if span["parent_id"] else None
    source = span["handoff_from"] or (agents.get(parent["span_id"]) if parent else None)
    return {
        "trace_id": trace_id,
        "span_id": span["span_id"],
        "from_agent": source or "(unknown)",
        "to_agent": span["handoff_to"],
        "protocol": span["handoff_protocol"] or "in-process",
        "start_ns": span["start_ns"],
        "duration_ns": max(0, span["end_ns"] - span["start_ns"]),
        "error": 1 if span["status"] == STATUS_ERROR else 0,
        "cost": subtree_cost.get(span["span_id"]),
    }
