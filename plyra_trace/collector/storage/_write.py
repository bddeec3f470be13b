"""The write algorithm both stores share: store a batch of spans and re-derive what they change.

Inside one transaction: lock the batch's traces (PostgreSQL: per-trace advisory locks, so
replicas writing spans of one trace at once serialise and never lose an update), insert the spans
(bulk path per store), then recompute each touched trace's summary, span agents, handoff edges and
usage roll-up from all its stored spans. Traces seen for the first time are wholly in the batch:
they are derived before inserting and nothing is read back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Final, Literal, Protocol

from sqlalchemy import Table

from plyra_trace.collector.guards import decision
from plyra_trace.collector.model import Row, SpanRecord, WriteResult
from plyra_trace.collector.sampling import skeleton
from plyra_trace.collector.storage import _sampling
from plyra_trace.collector.storage import _tables as t
from plyra_trace.collector.summary import TraceDerivation, derive

Conflict = Literal["replace", "ignore", "none"]
"""What a bulk insert does with an existing key: overwrite, keep the old row, or cannot happen."""

ENCODE: Final = json.JSONEncoder(default=str, check_circular=False, ensure_ascii=False).encode
"""One encoder for every attribute blob (``json.dumps(default=...)`` builds one per call)."""


class WriteOps(Protocol):
    """The per-store primitives the algorithm runs on, all inside one open transaction."""

    def lock(self, trace_ids: Sequence[str]) -> None:
        """Serialise writers of these traces until the transaction ends."""
        ...

    def select(self, table: Table, columns: Sequence[str], trace_ids: Sequence[str]) -> list[Row]:
        """``columns`` of the rows of ``table`` belonging to these traces."""
        ...

    def delete(self, table: Table, trace_ids: Sequence[str]) -> None:
        """Remove the rows of ``table`` belonging to these traces."""
        ...

    def put(self, table: Table, rows: Sequence[Sequence[Any]], conflict: Conflict) -> None:
        """Bulk-insert full rows (the table's column order)."""
        ...

    def set_agents(self, updates: Sequence[tuple[str | None, str, str, int]]) -> None:
        """Set spans' effective agent: (agent, trace id, span id, start ns)."""
        ...

    def new_resource(self, resource_id: int) -> bool:
        """False when this process already stored that resource (resources are never deleted)."""
        ...


class KnownResources:
    """Resource ids this process has committed, so a batch skips re-inserting them."""

    def __init__(self) -> None:
        self._committed: set[int] = set()
        self.pending: set[int] = set()

    def new_resource(self, resource_id: int) -> bool:
        """True (and remembered as pending) unless already committed."""
        if resource_id in self._committed:
            return False
        self.pending.add(resource_id)
        return True

    def committed(self) -> None:
        """The transaction holding the pending resources committed."""
        self._committed |= self.pending
        self.pending = set()


def write_batch(ops: WriteOps, spans: Sequence[SpanRecord], sampling: bool = False) -> WriteResult:
    """Store ``spans`` and refresh their traces; the caller commits. With ``sampling``, traces
    seen for the first time wait for a tail-sampling decision (``_sampling``)."""
    by_trace: dict[str, dict[str, SpanRecord]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, {})[span.span_id] = span  # last copy wins
    trace_ids = sorted(by_trace)
    ops.lock(trace_ids)
    known = {r["trace_id"] for r in ops.select(t.traces, ("trace_id",), trace_ids)}
    states = (
        {
            r["trace_id"]: r
            for r in ops.select(t.trace_sampling, _sampling.STATE_COLUMNS, sorted(known))
        }
        if known
        else {}
    )
    # Spans of a trace whose spans were sampled out follow the decision: not stored, but its
    # summary, usage and handoffs are derived again from its skeleton plus them.
    dropped = {i for i, state in states.items() if state["sampled"] == _sampling.DROPPED}
    derived: dict[str, TraceDerivation] = {}
    inputs: dict[str, list[Row]] = {}  # what each trace was derived from (its skeleton)
    for trace_id, records in by_trace.items():
        if trace_id not in known:
            inputs[trace_id] = [_derive_row(r) for r in records.values()]
            derived[trace_id] = derive(trace_id, inputs[trace_id])
            agents = derived[trace_id].agents
            for record in records.values():
                record.agent_effective = agents.get(record.span_id, record.agent)
    resources = _Resources()
    fresh: list[tuple[Any, ...]] = []
    again: list[tuple[Any, ...]] = []
    payloads: list[tuple[Any, ...]] = []
    for trace_id, records in by_trace.items():
        if trace_id in dropped:
            continue
        rows = again if trace_id in known else fresh
        for s in records.values():
            rows.append(_span_values(s, resources.id_of(s)))
            if s.events or s.input_value is not None or s.output_value is not None:
                payloads.append(_payload_values(s))
    ops.put(t.spans, fresh, "none")
    ops.put(t.spans, again, "replace")
    ops.put(t.resources, [r for r in resources.new.items() if ops.new_resource(r[0])], "ignore")
    ops.put(t.span_payloads, payloads, "replace")
    decisions = [decision(s) for records in by_trace.values() for s in records.values()]
    ops.put(t.guards, [[d[c] for c in t.GUARD_COLUMNS] for d in decisions if d], "replace")
    if dropped:
        _derive_dropped(ops, {i: by_trace[i] for i in sorted(dropped)}, derived, inputs)
    old_edges: set[tuple[str, str, str]] = set()
    if known:
        ordered = sorted(known)
        grouped: dict[str, list[Row]] = {}
        for row in ops.select(t.spans, t.DERIVE_COLUMNS, sorted(known - dropped)):
            grouped.setdefault(row["trace_id"], []).append(row)
        updates: list[tuple[str | None, str, str, int]] = []
        for trace_id, trace_rows in grouped.items():
            inputs[trace_id] = trace_rows
            derived[trace_id] = derive(trace_id, trace_rows)
            agents = derived[trace_id].agents
            for row in trace_rows:
                agent = agents.get(row["span_id"], row["own_agent"])
                if agent != row["agent"]:
                    updates.append((agent, trace_id, row["span_id"], row["start_ns"]))
        old_edges = {
            (h["from_agent"], h["to_agent"], h["protocol"])
            for h in ops.select(t.handoffs, ("from_agent", "to_agent", "protocol"), ordered)
        }
        ops.delete(t.handoffs, ordered)
        ops.delete(t.usage, ordered)
        if updates:
            ops.set_agents(updates)
    split: tuple[tuple[Conflict, set[str]], ...] = (
        ("none", derived.keys() - known),
        ("replace", known),
    )
    for conflict, ids in split:
        ops.put(t.traces, [_summary_values(derived[i].summary) for i in sorted(ids)], conflict)
    handoffs = [h for d in derived.values() for h in d.handoffs]
    ops.put(t.handoffs, [[h[c] for c in t.HANDOFF_COLUMNS] for h in handoffs], "none")
    ops.put(
        t.usage,
        [[u[c] for c in t.USAGE_COLUMNS] for d in derived.values() for u in d.usage],
        "none",
    )
    tracked = _sampling.tracked_rows(by_trace, known, states, inputs, sampling)
    ops.put(t.trace_sampling, tracked, "replace")
    return WriteResult(
        spans=len(spans),
        traces=[d.summary for d in derived.values()],
        edges=_touched_edges(handoffs, old_edges),
    )


def _derive_dropped(
    ops: WriteOps,
    by_trace: dict[str, dict[str, SpanRecord]],
    derived: dict[str, TraceDerivation],
    inputs: dict[str, list[Row]],
) -> None:
    """Derive sampled-out traces from their skeletons plus the new spans."""
    skeletons = {
        r["trace_id"]: r["skeleton"]
        for r in ops.select(t.trace_sampling, ("trace_id", "skeleton"), list(by_trace))
    }
    for trace_id, records in by_trace.items():
        inputs[trace_id] = skeleton.merge(
            skeleton.unpack(skeletons.get(trace_id)), [_derive_row(r) for r in records.values()]
        )
        derived[trace_id] = derive(trace_id, inputs[trace_id])


def _span_values(s: SpanRecord, resource_id: int) -> tuple[Any, ...]:
    return (
        s.trace_id,
        s.span_id,
        s.parent_id,
        s.name,
        s.otel_kind,
        s.kind,
        s.service,
        s.project,
        s.start_ns,
        s.end_ns,
        s.duration_ns,
        s.status,
        s.status_message,
        s.agent,
        s.agent_effective if s.agent_effective is not None else s.agent,
        s.session_id,
        s.user_id,
        s.model,
        s.provider,
        s.input_tokens,
        s.output_tokens,
        s.cache_read_tokens,
        s.cache_write_tokens,
        s.total_tokens,
        s.cost,
        s.cost_source,
        s.handoff_from,
        s.handoff_to,
        s.handoff_protocol,
        ENCODE(s.attributes),
        resource_id,
    )


def _payload_values(s: SpanRecord) -> tuple[Any, ...]:
    return (
        s.trace_id,
        s.span_id,
        ENCODE(s.events) if s.events else "[]",
        s.input_value,
        s.input_mime,
        s.output_value,
        s.output_mime,
        s.start_ns,
    )


def _derive_row(s: SpanRecord) -> Row:
    """The columns :func:`derive` reads, straight from a record not yet stored."""
    return {
        "span_id": s.span_id,
        "parent_id": s.parent_id,
        "name": s.name,
        "service": s.service,
        "project": s.project,
        "own_agent": s.agent,
        "start_ns": s.start_ns,
        "end_ns": s.end_ns,
        "status": s.status,
        "input_tokens": s.input_tokens,
        "output_tokens": s.output_tokens,
        "total_tokens": s.total_tokens,
        "cost": s.cost,
        "model": s.model,
        "provider": s.provider,
        "session_id": s.session_id,
        "user_id": s.user_id,
        "handoff_from": s.handoff_from,
        "handoff_to": s.handoff_to,
        "handoff_protocol": s.handoff_protocol,
    }


def _summary_values(summary: Row) -> list[Any]:
    values = []
    for column in t.TRACE_COLUMNS:
        value = summary[column]
        if column in ("services", "agents"):
            value = json.dumps(value)
        elif column == "complete":
            value = int(value)
        values.append(value)
    return values


def _touched_edges(handoffs: Sequence[Row], old: set[tuple[str, str, str]]) -> list[Row]:
    """Edges this write added to or removed from, with what the written traces hold for each."""
    counts: dict[tuple[str, str, str], list[Any]] = {edge: [0, 0, None] for edge in old}
    for h in handoffs:
        entry = counts.setdefault((h["from_agent"], h["to_agent"], h["protocol"]), [0, 0, None])
        entry[0] += 1
        entry[1] += h["error"]
        if h["cost"] is not None:
            entry[2] = h["cost"] + (entry[2] or 0.0)
    return [
        {"from": source, "to": target, "protocol": p, "count": c, "errors": e, "cost": cost}
        for (source, target, p), (c, e, cost) in sorted(counts.items())
    ]


class _Resources:
    """Resource attributes stored once, keyed by a hash of their JSON (spans keep the key)."""

    def __init__(self) -> None:
        self._by_object: dict[int, int] = {}
        self.new: dict[int, str] = {}

    def id_of(self, span: SpanRecord) -> int:
        # Spans of one request share their resource dict: serialise and hash it once.
        found = self._by_object.get(id(span.resource))
        if found is None:
            text = json.dumps(span.resource, sort_keys=True, default=str)
            digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
            found = int.from_bytes(digest, "big", signed=True)
            self._by_object[id(span.resource)] = found
            self.new[found] = text
        return found
