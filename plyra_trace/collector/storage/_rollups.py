"""Hourly roll-ups kept exact at ingest, and the cost and graph answers read from them.

Each row counts in the hour the base queries window it by: a ``usage`` row (model, agent,
service, project) in the hour of its start, a trace's session and user in the hour of the
trace's start, a handoff (count, errors, summed latency, cost, a log-scale latency histogram) in
the hour of its start. A trace counts once per dimension value, in the hour the value first
appears in it. A write that re-derives a trace subtracts the trace's old contribution and adds
its new one in the same transaction; retention subtracts what it deletes. Deltas are applied
with ``INSERT ... ON CONFLICT DO UPDATE SET x = x + excluded.x`` (the same text on both
engines), in key order, so concurrent replicas never lose an update nor deadlock on roll-up rows.

A query window is answered from roll-up rows for its whole hours plus, for the partial hours at
its ends, the same aggregation computed from the base tables, so answers equal what the spans
give (the graph's p95 comes from 5% latency buckets; everything else is exact).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Connection,
    Table,
    case,
    exists,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement

from plyra_trace.collector.model import Row
from plyra_trace.collector.storage import _tables as t

HOUR_NS: Final = 3_600 * 10**9
USAGE_DIMENSIONS: Final = ("model", "agent", "service", "project")
TRACE_DIMENSIONS: Final = {"session": "session_id", "user": "user_id"}
MEASURES: Final = tuple(c.name for c in t.rollup.columns)[3:]
EDGE_MEASURES: Final = tuple(c.name for c in t.edge_rollup.columns)[4:]
SUMMARY_COLUMNS: Final = (
    "trace_id",
    "start_ns",
    "session_id",
    "user_id",
    "span_count",
    "error_count",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost",
    "unpriced_count",
)
"""The trace summary columns a trace's roll-up contribution reads."""
_STEP: Final = math.log(1.05)
_INT64: Final = (-(2**63), 2**63 - 1)
_USAGE_SUMS: Final = MEASURES[1:7]
_ONE_TRACE: Final = {s: [s, 0, 0, 0, 0, 0, 0, 0.0, 0, 0] for s in (1, -1)}

Deltas = dict[tuple[Table, tuple[Any, ...]], list[Any]]
"""(table, key columns) -> measures to add."""


def bucket(duration_ns: int) -> int:
    """Latency histogram bucket: 0 for 0 ns, else 1 + floor(log_1.05(ns))."""
    return 0 if duration_ns < 1 else 1 + int(math.log(duration_ns) / _STEP)


def bucket_value(index: int) -> int:
    """The value a bucket reports: its geometric middle (within 2.5% of any value in it)."""
    return 0 if index == 0 else round(math.exp((index - 0.5) * _STEP))


def _label(value: Any) -> str:
    return "" if value is None else str(value)


def _add(deltas: Deltas, table: Table, key: tuple[Any, ...], values: Sequence[Any]) -> None:
    found = deltas.get((table, key))
    if found is None:
        deltas[(table, key)] = list(values)
    else:
        for i, value in enumerate(values):
            found[i] += value


def contribute(
    deltas: Deltas, summary: Row, usage: Sequence[Row], handoffs: Iterable[Row], sign: int
) -> None:
    """Add (``sign`` 1) or take away (-1) one trace's contribution to the roll-ups."""
    for dimension in USAGE_DIMENSIONS:
        first: dict[str, int] = {}
        for u in usage:
            key = _label(u[dimension])
            first[key] = min(first.get(key, u["start_ns"]), u["start_ns"])
            cost = u["cost"]
            _add(
                deltas,
                t.rollup,
                (dimension, u["start_ns"] // HOUR_NS, key),
                [
                    0,
                    *(sign * u[m] for m in _USAGE_SUMS),
                    0.0 if cost is None else sign * cost,
                    0 if cost is None else sign,
                    sign * u["unpriced"],
                ],
            )
        for key, start in first.items():
            # A trace counts once per value: in the hour the value first appears in it.
            _add(deltas, t.rollup, (dimension, start // HOUR_NS, key), _ONE_TRACE[sign])
    hour = summary["start_ns"] // HOUR_NS
    for dimension, column in TRACE_DIMENSIONS.items():
        if summary[column] is None:
            continue
        cost = summary["cost"]
        _add(
            deltas,
            t.rollup,
            (dimension, hour, str(summary[column])),
            [
                sign,
                sign * summary["span_count"],
                sign * summary["error_count"],
                0,
                sign * summary["input_tokens"],
                sign * summary["output_tokens"],
                sign * summary["total_tokens"],
                0.0 if cost is None else sign * cost,
                0 if cost is None else sign,
                sign * summary["unpriced_count"],
            ],
        )
    for h in handoffs:
        edge = (h["start_ns"] // HOUR_NS, h["from_agent"], h["to_agent"], h["protocol"])
        cost = h["cost"]
        _add(
            deltas,
            t.edge_rollup,
            edge,
            [
                sign,
                sign * h["error"],
                sign * h["duration_ns"],
                0.0 if cost is None else sign * cost,
                0 if cost is None else sign,
            ],
        )
        _add(deltas, t.edge_latency, (*edge, bucket(h["duration_ns"])), [sign])


def delta_rows(deltas: Deltas) -> dict[Table, list[tuple[Any, ...]]]:
    """Non-zero deltas as full rows per table, in key order (a fixed lock order for replicas)."""
    out: dict[Table, list[tuple[Any, ...]]] = {table: [] for table in t.ROLLUP_TABLES}
    for (table, key), values in sorted(deltas.items(), key=lambda kv: (kv[0][0].name, kv[0][1])):
        if any(values):
            out[table].append((*key, *values))
    return out


def upsert_sql(table: Table, marker: str) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` adding each measure; ``marker`` is ? or %s."""
    names = [c.name for c in table.columns]
    keys = [c.name for c in table.primary_key.columns]
    additions = ", ".join(f"{n} = {table.name}.{n} + excluded.{n}" for n in names if n not in keys)
    return (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join([marker] * len(names))})"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {additions}"
    )


def subtract_traces(conn: Connection, trace_ids: Sequence[str]) -> None:
    """Take the given traces' contributions out of the roll-ups (before their rows go)."""
    deltas: Deltas = {}
    for summary, usage, handoffs in _stored(conn, trace_ids):
        contribute(deltas, summary, usage, handoffs, -1)
    apply(conn, deltas)


def backfill(conn: Connection, chunk: int = 2_000) -> None:
    """Build the roll-ups from every stored trace (a store written before they existed)."""
    tr = t.traces.c
    last = ""
    while True:
        ids = [
            r[0]
            for r in conn.execute(
                select(tr.trace_id).where(tr.trace_id > last).order_by(tr.trace_id).limit(chunk)
            )
        ]
        if not ids:
            return
        deltas: Deltas = {}
        for summary, usage, handoffs in _stored(conn, ids):
            contribute(deltas, summary, usage, handoffs, 1)
        apply(conn, deltas)
        last = ids[-1]


def apply(conn: Connection, deltas: Deltas) -> None:
    """Apply deltas through a SQLAlchemy connection (retention, migration)."""
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    for table, rows in delta_rows(deltas).items():
        if rows:
            conn.exec_driver_sql(upsert_sql(table, marker), rows)


def _stored(conn: Connection, trace_ids: Sequence[str]) -> list[tuple[Row, list[Row], list[Row]]]:
    ids = list(trace_ids)
    summaries = [
        dict(r)
        for r in conn.execute(
            select(*(t.traces.c[c] for c in SUMMARY_COLUMNS)).where(t.traces.c.trace_id.in_(ids))
        ).mappings()
    ]
    usage: dict[str, list[Row]] = {}
    for r in conn.execute(select(t.usage).where(t.usage.c.trace_id.in_(ids))).mappings():
        usage.setdefault(r["trace_id"], []).append(dict(r))
    handoffs: dict[str, list[Row]] = {}
    for r in conn.execute(select(t.handoffs).where(t.handoffs.c.trace_id.in_(ids))).mappings():
        handoffs.setdefault(r["trace_id"], []).append(dict(r))
    return [(s, usage.get(s["trace_id"], []), handoffs.get(s["trace_id"], [])) for s in summaries]


# --- reading ----------------------------------------------------------------------------------
class Window:
    """A [since, until) window split into whole hours and the partial ranges at its ends."""

    def __init__(self, since_ns: int | None, until_ns: int | None) -> None:
        first = None if since_ns is None else -(-since_ns // HOUR_NS)
        end = None if until_ns is None else until_ns // HOUR_NS
        self.partial: list[tuple[int | None, int | None]] = []
        if first is not None and end is not None and first >= end:
            self.hours: tuple[int, int] | None = None
            self.partial.append((since_ns, until_ns))
            return
        self.hours = (first if first is not None else -(2**62), end if end is not None else 2**62)
        # Hour edges of windows near the ends of 64-bit time stay within 64 bits.
        if since_ns is not None and first is not None and since_ns < first * HOUR_NS:
            self.partial.append((since_ns, min(first * HOUR_NS, _INT64[1])))
        if until_ns is not None and end is not None and until_ns > end * HOUR_NS:
            self.partial.append((max(end * HOUR_NS, _INT64[0]), until_ns))

    def hour_clauses(self, column: Any) -> list[ColumnElement[bool]]:
        assert self.hours is not None
        return [column >= self.hours[0], column < self.hours[1]]


def _hour(column: Any) -> ColumnElement[int]:
    # A literal, not a bound parameter: GROUP BY must repeat the SELECT's expression verbatim.
    # Plain ``/``: integer division on both engines (``//`` would add FLOOR, a float on PG).
    return type_coerce(column.op("/")(literal_column(str(HOUR_NS))), BigInteger())


def between(column: Any, low: int | None, high: int | None) -> list[ColumnElement[bool]]:
    """``low <= column < high``, each bound only when given."""
    clauses: list[ColumnElement[bool]] = []
    if low is not None:
        clauses.append(column >= low)
    if high is not None:
        clauses.append(column < high)
    return clauses


def dimension_rows(conn: Connection, dimension: str, window: Window) -> list[Row]:
    """Per (key, hour) sums of MEASURES in the window: roll-ups plus partial hours' base rows.

    ``dimension`` is a roll-up dimension; hours are returned so callers can group by day.
    """
    r = t.rollup.c
    rows: list[Row] = []
    if window.hours is not None:
        statement = (
            select(r.key, r.hour, *(func.sum(r[m]).label(m) for m in MEASURES))
            .where(r.dimension == dimension, *window.hour_clauses(r.hour))
            .group_by(r.key, r.hour)
        )
        rows += [dict(x) for x in conn.execute(statement).mappings()]
    for low, high in window.partial:
        rows += [dict(x) for x in conn.execute(_base_dimension(dimension, low, high)).mappings()]
    for row in rows:
        row["key"] = None if row["key"] == "" else row["key"]
        row["cost"] = row["cost"] or 0.0
    return rows


def _base_dimension(dimension: str, low: int | None, high: int | None) -> Any:
    tr = t.traces.c
    hour = _hour(tr.start_ns).label("hour")
    if dimension in TRACE_DIMENSIONS:
        key = tr[TRACE_DIMENSIONS[dimension]]
        return (
            select(
                key.label("key"),
                hour,
                func.count().label("traces"),
                func.sum(tr.span_count).label("spans"),
                func.sum(tr.error_count).label("errors"),
                func.sum(0).label("llm_calls"),
                func.sum(tr.input_tokens).label("input_tokens"),
                func.sum(tr.output_tokens).label("output_tokens"),
                func.sum(tr.total_tokens).label("total_tokens"),
                func.sum(tr.cost).label("cost"),
                func.count(tr.cost).label("priced"),
                func.sum(tr.unpriced_count).label("unpriced"),
            )
            .where(key.is_not(None), *between(tr.start_ns, low, high))
            .group_by(key, hour)
        )
    u = t.usage.c
    key = u[dimension]
    earlier = t.usage.alias("earlier")
    first = ~exists().where(
        earlier.c.trace_id == u.trace_id,
        earlier.c[dimension].is_not_distinct_from(key),
        earlier.c.start_ns < u.start_ns,
    )
    return (
        select(
            key.label("key"),
            _hour(u.start_ns).label("hour"),
            func.count(case((first, u.trace_id)).distinct()).label("traces"),
            *(func.sum(u[m]).label(m) for m in (*_USAGE_SUMS, "cost")),
            func.count(u.cost).label("priced"),
            func.sum(u.unpriced).label("unpriced"),
        )
        .where(*between(u.start_ns, low, high))
        .group_by(key, _hour(u.start_ns))
    )


def edge_rows(conn: Connection, window: Window) -> tuple[list[Row], list[Row]]:
    """Edge sums and latency-histogram counts in the window (roll-ups plus partial hours)."""
    e, lat = t.edge_rollup.c, t.edge_latency.c
    edge_key = (e.from_agent, e.to_agent, e.protocol)
    sums: list[Row] = []
    histogram: list[Row] = []
    if window.hours is not None:
        statement = (
            select(*edge_key, *(func.sum(e[m]).label(m) for m in EDGE_MEASURES))
            .where(*window.hour_clauses(e.hour))
            .group_by(*edge_key)
        )
        sums += [dict(x) for x in conn.execute(statement).mappings()]
        lat_key = (lat.from_agent, lat.to_agent, lat.protocol, lat.bucket)
        statement = (
            select(*lat_key, func.sum(lat.count).label("count"))
            .where(*window.hour_clauses(lat.hour))
            .group_by(*lat_key)
        )
        histogram += [dict(x) for x in conn.execute(statement).mappings()]
    h = t.handoffs.c
    for low, high in window.partial:
        for row in conn.execute(
            select(h.from_agent, h.to_agent, h.protocol, h.error, h.duration_ns, h.cost).where(
                *between(h.start_ns, low, high)
            )
        ).mappings():
            sums.append(
                {
                    "from_agent": row["from_agent"],
                    "to_agent": row["to_agent"],
                    "protocol": row["protocol"],
                    "count": 1,
                    "errors": row["error"],
                    "duration_ns": row["duration_ns"],
                    "cost": row["cost"] or 0.0,
                    "priced": 0 if row["cost"] is None else 1,
                }
            )
            histogram.append({**row, "bucket": bucket(row["duration_ns"]), "count": 1})
    return sums, histogram


def day_of(hour: int) -> str:
    """``YYYY-MM-DD`` (UTC) of an hour number."""
    return f"{datetime.fromtimestamp(hour * 3_600, UTC):%Y-%m-%d}"


def p95_of(histogram: dict[int, int]) -> int | None:
    """Nearest-rank 95th percentile of a bucket histogram, as its bucket's value."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = -(-95 * total // 100)
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bucket_value(index)
    return None
