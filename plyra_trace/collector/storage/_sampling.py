"""Tail-sampling state in the store, once for both stores: what a write records, what the decider
reads, and how a decision is applied (``docs/sampling.md``).

The decision itself is store-independent (:mod:`plyra_trace.collector.sampling`). Here: each
write upserts a ``trace_sampling`` row per tracked trace (span marks, when its latest span was
stored, a size estimate, a skeleton until it is kept); a decision updates that row if no span
arrived since, and for a dropped trace deletes its span rows and payloads in the same transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Connection, bindparam, case, exists, func, null, select, update
from sqlalchemy.dialects import postgresql, sqlite

from plyra_trace._semconv import GUARD_ACTION
from plyra_trace.collector.model import Row, SpanRecord
from plyra_trace.collector.sampling import skeleton
from plyra_trace.collector.sampling.decide import Decision, TraceFacts, span_marks
from plyra_trace.collector.storage import _tables as t

STATE_COLUMNS: Final = ("trace_id", "sampled", "sticky", "kept_because", "marks", "span_bytes")
"""What a write reads back of a tracked trace's state (the skeleton only for dropped ones)."""
_ROW_BYTES: Final = 160
_ATTRIBUTE_BYTES: Final = 40
"""Rough bytes of a span row with its index entries, and of one attribute: the estimate of what a
sampled-out trace frees, counted from the spans as they arrive (reading them back would cost)."""
KEPT, DROPPED = 1, 0


def tracked_rows(
    by_trace: Mapping[str, Mapping[str, SpanRecord]],
    known: set[str],
    states: Mapping[str, Row],
    inputs: Mapping[str, Sequence[Row]],
    sampling: bool,
) -> list[tuple[Any, ...]]:
    """Full ``trace_sampling`` rows to upsert for the traces of one write: new traces while
    sampling is on, and traces already tracked (traces stored while it was off stay untracked)."""
    now = time.time_ns()
    rows = []
    for trace_id, records in by_trace.items():
        state = states.get(trace_id)
        if state is None and (trace_id in known or not sampling):
            continue
        marks = set(json.loads(state["marks"])) if state else set()
        size = state["span_bytes"] if state else 0
        for r in records.values():
            marks |= span_marks(r.status, r.handoff_to, r.attributes.get(GUARD_ACTION))
            size += _ROW_BYTES + _ATTRIBUTE_BYTES * len(r.attributes)
            size += len(r.input_value or "") + len(r.output_value or "")
        sampled = state["sampled"] if state else None
        packed = None if sampled == KEPT else skeleton.pack(inputs.get(trace_id, ()))
        rows.append(
            (
                trace_id,
                sampled,
                state["sticky"] if state else 0,
                state["kept_because"] if state else None,
                json.dumps(sorted(marks)),
                now,
                size,
                packed,
            )
        )
    return rows


def facts(row: Row) -> TraceFacts:
    """The decision's input from a pending row joined with its trace summary."""
    return TraceFacts(
        trace_id=row["trace_id"],
        marks=frozenset(json.loads(row["marks"])),
        cost=row["cost"],
        duration_ns=row["duration_ns"],
        session_id=row["session_id"],
        project=row["project"],
        services=tuple(row["services"]),
        agents=tuple(row["agents"]),
        seen_ns=row["seen_ns"],
    )


def pending_statement(now_ns: int, wait_ns: int, limit: int) -> Any:
    """Undecided traces quiet since ``now_ns - wait_ns``, oldest first, with their summaries."""
    s, tr, live = t.trace_sampling.c, t.traces.c, t.live_spans.c
    return (
        select(
            s.trace_id,
            s.marks,
            s.seen_ns,
            tr.cost,
            tr.duration_ns,
            tr.session_id,
            tr.project,
            tr.services,
            tr.agents,
        )
        .select_from(t.trace_sampling.join(t.traces, tr.trace_id == s.trace_id))
        .where(
            s.sampled.is_(None),
            s.seen_ns <= now_ns - wait_ns,
            # A trace is not decided while a span of it runs (live records, still beating).
            ~exists().where(live.trace_id == s.trace_id, live.deadline_ns >= now_ns),
        )
        .order_by(s.seen_ns)
        .limit(limit)
    )


def sticky_statement(session_ids: Sequence[str]) -> Any:
    """Sessions among ``session_ids`` holding a trace kept for a problem."""
    s, tr = t.trace_sampling.c, t.traces.c
    return (
        select(tr.session_id)
        .distinct()
        .select_from(t.traces.join(t.trace_sampling, s.trace_id == tr.trace_id))
        .where(tr.session_id.in_(list(session_ids)), s.sticky == 1)
    )


def stats_statement() -> Any:
    """Decision counts and bytes freed (no row before the first decision)."""
    st = t.sampling_stats.c
    return select(st.kept, st.dropped, st.spans_dropped, st.bytes_saved).where(st.id == 1)


def pending_statement_count() -> Any:
    """How many traces wait for a decision."""
    return select(func.count().label("pending")).where(t.trace_sampling.c.sampled.is_(None))


def apply(conn: Connection, decisions: Sequence[Decision]) -> int:
    """Record the decisions still valid (no span since ``seen_ns``, not decided elsewhere): a kept
    trace drops its skeleton, a dropped one its span rows and payloads; count them. The caller
    holds the traces' write locks, so what is read here stays true until the commit."""
    s = t.trace_sampling.c
    undecided = dict(
        conn.execute(
            select(s.trace_id, s.seen_ns).where(
                s.trace_id.in_([d.trace_id for d in decisions]), s.sampled.is_(None)
            )
        ).all()
    )
    valid = [d for d in decisions if undecided.get(d.trace_id) == d.seen_ns]
    if not valid:
        return 0
    conn.execute(
        update(t.trace_sampling)
        .where(s.trace_id == bindparam("b_trace"))
        .values(
            sampled=bindparam("b_sampled"),
            sticky=bindparam("b_sticky"),
            kept_because=bindparam("b_because"),
            skeleton=case((bindparam("b_keep") == 1, null()), else_=s.skeleton),
        ),
        [
            {
                "b_trace": d.trace_id,
                "b_sampled": KEPT if d.keep else DROPPED,
                "b_sticky": int(d.sticky),
                "b_because": json.dumps(d.kept_because) if d.keep else None,
                "b_keep": int(d.keep),
            }
            for d in valid
        ],
    )
    dropped = [d.trace_id for d in valid if not d.keep]
    spans = freed = 0
    if dropped:
        freed = int(
            conn.execute(
                select(
                    func.coalesce(
                        func.sum(s.span_bytes - func.coalesce(func.length(s.skeleton), 0)), 0
                    )
                ).where(s.trace_id.in_(dropped))
            ).scalar()
            or 0
        )
        spans = conn.execute(t.spans.delete().where(t.spans.c.trace_id.in_(dropped))).rowcount
        conn.execute(t.span_payloads.delete().where(t.span_payloads.c.trace_id.in_(dropped)))
    _count(conn, len(valid) - len(dropped), len(dropped), spans, freed)
    return len(valid)


def _count(conn: Connection, kept: int, dropped: int, spans: int, freed: int) -> None:
    """Add to the one ``sampling_stats`` row (created by the first decision)."""
    st = t.sampling_stats.c
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(t.sampling_stats).values(
        id=1, kept=kept, dropped=dropped, spans_dropped=spans, bytes_saved=freed
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[st.id],
            set_={
                "kept": st.kept + kept,
                "dropped": st.dropped + dropped,
                "spans_dropped": st.spans_dropped + spans,
                "bytes_saved": st.bytes_saved + freed,
            },
        )
    )


def empty_stats() -> Row:
    """The counts before any decision."""
    return {"kept": 0, "dropped": 0, "spans_dropped": 0, "bytes_saved": 0}


__all__ = [
    "STATE_COLUMNS",
    "apply",
    "empty_stats",
    "facts",
    "pending_statement",
    "pending_statement_count",
    "stats_statement",
    "sticky_statement",
    "tracked_rows",
]
