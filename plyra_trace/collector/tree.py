"""Shape stored spans for the UI: tree order with depth, and flamegraphs for one or many traces.

Done on the server so the browser only draws: spans come back in depth-first order with ``depth``
and ``order``; flamegraph nodes carry their total and self values for the chosen weight.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from plyra_trace.collector.model import Row, Weight
from plyra_trace.collector.summary import repeats_parent_usage


def _children(spans: Sequence[Row]) -> tuple[list[Row], dict[str, list[Row]]]:
    ids = {span["span_id"] for span in spans}
    roots: list[Row] = []
    children: dict[str, list[Row]] = {}
    for span in sorted(spans, key=lambda s: (s["start_ns"], s["span_id"])):
        parent = span["parent_id"]
        if parent is not None and parent in ids and parent != span["span_id"]:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    return roots, children


def _depth_first(spans: Sequence[Row]) -> Iterable[tuple[Row, int]]:
    roots, children = _children(spans)
    seen: set[str] = set()
    stack = [(root, 0) for root in reversed(roots)]
    while stack:
        span, depth = stack.pop()
        if span["span_id"] in seen:
            continue
        seen.add(span["span_id"])
        yield span, depth
        stack.extend((child, depth + 1) for child in reversed(children.get(span["span_id"], [])))


def order_tree(spans: Sequence[Row]) -> list[Row]:
    """Spans in depth-first order (children by start time), each with ``depth`` and ``order``."""
    ordered = []
    for index, (span, depth) in enumerate(_depth_first(spans)):
        span["depth"] = depth
        span["order"] = index
        ordered.append(span)
    return ordered


def weight_of(span: Row, weight: Weight) -> float:
    """A span's own contribution: its duration (ns), its cost (USD) or its tokens."""
    if weight == "duration":
        return float(span["duration_ns"])
    if weight == "cost":
        return float(span["cost"] or 0.0)
    return float(span["total_tokens"] or 0)


def _node(name: str) -> dict[str, Any]:
    return {"name": name, "value": 0.0, "self": 0.0, "count": 0, "children": {}}


def _finish(node: dict[str, Any], weight: Weight) -> Row:
    """Turn the child dict into a sorted list; time nests so a span's value is its own duration."""
    children = [_finish(child, weight) for child in node["children"].values()]
    children.sort(key=lambda c: -c["value"])
    child_total = sum(c["value"] for c in children)
    if weight == "duration":
        node["self"] = max(0.0, node["value"] - child_total)
    else:
        node["value"] = node["self"] + child_total
    node["children"] = children
    return node


def flamegraph(spans: Sequence[Row], weight: Weight, *, traces: int = 1) -> Row:
    """Merge spans by path of names from their root into one flamegraph rooted at ``(all)``.

    With ``duration`` a node's value is its spans' summed durations; with ``cost`` or ``tokens`` it
    is the sum over its subtree. Across many traces, identical paths aggregate.
    """
    by_trace: dict[str, list[Row]] = {}
    for span in spans:
        by_trace.setdefault(span["trace_id"], []).append(span)
    top = _node("(all)")
    for trace_spans in by_trace.values():
        path: list[dict[str, Any]] = [top]
        by_id = {span["span_id"]: span for span in trace_spans}
        for span, depth in _depth_first(trace_spans):
            del path[depth + 1 :]
            parent = path[-1]
            node = parent["children"].get(span["name"])
            if node is None:
                node = parent["children"][span["name"]] = _node(span["name"])
            node["count"] += 1
            if weight == "duration":
                node["value"] += weight_of(span, weight)
            elif not repeats_parent_usage(span, by_id.get(span["parent_id"] or "")):
                node["self"] += weight_of(span, weight)
            path.append(node)
    if weight == "duration":
        top["value"] = sum(c["value"] for c in top["children"].values())
    root = _finish(top, weight)
    return {"weight": weight, "traces": traces, "root": root}
