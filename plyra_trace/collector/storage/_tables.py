"""The collector's tables, defined once for both stores (SQLAlchemy Core).

Hot span rows, cold span payloads, resources, trace summaries, handoff edges, a usage roll-up per
trace, guard decisions, tail-sampling state, running spans, API keys and a one-row metadata
table holding the schema version.
PostgreSQL differences live here as dialect options: span rows and payloads are
range-partitioned by day on ``start_ns`` (so retention drops whole partitions), attributes are
JSONB. On SQLite the same tables match the
0.3.0 file layout, so an old file only gains what later versions added (see ``_migrate``).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata: Final = MetaData()

_NS = BigInteger().with_variant(Integer(), "sqlite")
"""Nanosecond times and 64-bit ids: INTEGER on SQLite (already 64-bit), BIGINT on PostgreSQL."""
_JSON = JSON().with_variant(JSONB(), "postgresql")
_BY_DAY: Final = "RANGE (start_ns)"
"""PostgreSQL partitions span rows and payloads on their start (one partition per UTC day)."""


def _text(name: str, nullable: bool = True) -> Column[str]:
    return Column(name, Text, nullable=nullable)


def _int(name: str, nullable: bool = True) -> Column[int]:
    return Column(name, _NS, nullable=nullable)


spans: Final = Table(
    "spans",
    metadata,
    _text("trace_id", False),
    _text("span_id", False),
    _text("parent_id"),
    _text("name", False),
    _text("otel_kind", False),
    _text("kind", False),
    _text("service", False),
    _text("project", False),
    _int("start_ns", False),
    _int("end_ns", False),
    _int("duration_ns", False),
    Column("status", Integer, nullable=False),
    _text("status_message", False),
    _text("own_agent"),
    _text("agent"),
    _text("session_id"),
    _text("user_id"),
    _text("model"),
    _text("provider"),
    _int("input_tokens"),
    _int("output_tokens"),
    _int("cache_read_tokens"),
    _int("cache_write_tokens"),
    _int("total_tokens"),
    Column("cost", Float),
    _text("cost_source"),
    _text("handoff_from"),
    _text("handoff_to"),
    _text("handoff_protocol"),
    Column("attributes", _JSON, nullable=False),
    _int("resource_id", False),
    postgresql_partition_by=_BY_DAY,
)
# SQLite: a unique index (rowid table, as 0.3.0); PostgreSQL: the primary key of every partition
# must hold the partition column.
Index("spans_id", spans.c.trace_id, spans.c.span_id, unique=True).ddl_if(dialect="sqlite")
Index("spans_key", spans.c.trace_id, spans.c.span_id, spans.c.start_ns, unique=True).ddl_if(
    dialect="postgresql"
)

resources: Final = Table(
    "resources",
    metadata,
    Column("resource_id", _NS, primary_key=True, autoincrement=False),
    Column("attributes", _JSON, nullable=False),
)

span_payloads: Final = Table(
    "span_payloads",
    metadata,
    _text("trace_id", False),
    _text("span_id", False),
    Column("events", _JSON, nullable=False),
    _text("input_value"),
    _text("input_mime"),
    _text("output_value"),
    _text("output_mime"),
    _int("start_ns"),
    PrimaryKeyConstraint("trace_id", "span_id").ddl_if(dialect="sqlite"),
    sqlite_with_rowid=False,
    postgresql_partition_by=_BY_DAY,
)
Index(
    "span_payloads_key",
    span_payloads.c.trace_id,
    span_payloads.c.span_id,
    span_payloads.c.start_ns,
    unique=True,
).ddl_if(dialect="postgresql")

traces: Final = Table(
    "traces",
    metadata,
    Column("trace_id", Text, primary_key=True),
    _text("root_span_id", False),
    _text("root_name", False),
    _text("root_service", False),
    Column("complete", Integer, nullable=False),
    _text("project", False),
    Column("services", _JSON, nullable=False),
    Column("agents", _JSON, nullable=False),
    _int("span_count", False),
    _int("error_count", False),
    _text("status", False),
    _int("input_tokens", False),
    _int("output_tokens", False),
    _int("total_tokens", False),
    Column("cost", Float),
    _int("unpriced_count", False),
    _int("start_ns", False),
    _int("end_ns", False),
    _int("duration_ns", False),
    _text("session_id"),
    _text("user_id"),
)
Index("traces_start", traces.c.start_ns.desc(), traces.c.trace_id.desc())
Index("traces_session", traces.c.session_id, traces.c.start_ns)
Index("traces_user", traces.c.user_id, traces.c.start_ns)
Index("traces_root_name", traces.c.root_name, traces.c.start_ns)
Index("traces_project", traces.c.project, traces.c.start_ns)

handoffs: Final = Table(
    "handoffs",
    metadata,
    Column("trace_id", Text, primary_key=True),
    Column("span_id", Text, primary_key=True),
    _text("from_agent", False),
    _text("to_agent", False),
    _text("protocol", False),
    _int("start_ns", False),
    _int("duration_ns", False),
    Column("error", Integer, nullable=False),
    Column("cost", Float),
    sqlite_with_rowid=False,
)
Index("handoffs_start", handoffs.c.start_ns)
Index("handoffs_edge", handoffs.c.from_agent, handoffs.c.to_agent, handoffs.c.protocol)

usage: Final = Table(
    "usage",
    metadata,
    _text("trace_id", False),
    Column("day", Integer, nullable=False),
    _int("start_ns", False),
    _text("agent"),
    _text("service", False),
    _text("project", False),
    _text("model"),
    _text("provider"),
    _int("spans", False),
    _int("errors", False),
    _int("llm_calls", False),
    _int("input_tokens", False),
    _int("output_tokens", False),
    _int("total_tokens", False),
    Column("cost", Float),
    _int("unpriced", False),
)
Index("usage_trace", usage.c.trace_id, usage.c.agent)
Index("usage_start", usage.c.start_ns)

guards: Final = Table(
    "guards",
    metadata,
    Column("trace_id", Text, primary_key=True),
    Column("span_id", Text, primary_key=True),
    _int("start_ns", False),
    _int("duration_ns", False),
    _text("project", False),
    _text("service", False),
    _text("policy", False),
    _text("action", False),
    _text("provider"),
    sqlite_with_rowid=False,
)
"""One row per guard decision (a GUARD span with ``guard.action``): what the Guards view reads."""
Index("guards_start", guards.c.start_ns)
Index("guards_policy", guards.c.policy, guards.c.action, guards.c.start_ns)


def _measures(*names: str) -> list[Column[int]]:
    return [Column(name, _NS, nullable=False) for name in names]


def _edge_hour() -> list[Column[Any]]:
    """The key of an edge's hour: hour, from, to, protocol."""
    return [
        Column("hour", _NS, primary_key=True, autoincrement=False),
        *(Column(name, Text, primary_key=True) for name in ("from_agent", "to_agent", "protocol")),
    ]


rollup: Final = Table(
    "rollup",
    metadata,
    Column("dimension", Text, primary_key=True),
    Column("hour", _NS, primary_key=True, autoincrement=False),
    Column("key", Text, primary_key=True),
    *_measures("traces", "spans", "errors", "llm_calls"),
    *_measures("input_tokens", "output_tokens", "total_tokens"),
    Column("cost", Float, nullable=False),
    *_measures("priced", "unpriced"),
)
"""Per hour (of each trace's start) and dimension value: what its traces add up to.

``dimension`` is model, agent, service, project (from ``usage``) or session, user (from
``traces``); ``key`` '' stands for NULL. ``priced`` counts the contributions that had a cost, so a
group whose ``priced`` is 0 reports cost NULL. Kept by additive deltas (see ``_rollups``)."""

edge_rollup: Final = Table(
    "edge_rollup",
    metadata,
    *_edge_hour(),
    *_measures("count", "errors", "duration_ns"),
    Column("cost", Float, nullable=False),
    *_measures("priced"),
)
"""Per hour and handoff edge: count, errors, summed latency (exact average), cost."""

edge_latency: Final = Table(
    "edge_latency",
    metadata,
    *_edge_hour(),
    Column("bucket", Integer, primary_key=True, autoincrement=False),
    *_measures("count"),
)
"""Per hour and edge, a log-scale latency histogram (5% buckets) the graph's p95 is read from."""

ROLLUP_TABLES: Final = (rollup, edge_rollup, edge_latency)

api_keys: Final = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    _text("name", False),
    _text("secret_hash", False),
    _int("created_ns", False),
    _int("revoked_ns"),
)

trace_sampling: Final = Table(
    "trace_sampling",
    metadata,
    Column("trace_id", Text, primary_key=True),
    Column("sampled", Integer),
    Column("sticky", Integer, nullable=False),
    _text("kept_because"),
    _text("marks", False),
    _int("seen_ns", False),
    _int("span_bytes", False),
    Column("skeleton", LargeBinary),
)
"""Tail sampling state of each trace first seen while sampling was on (``docs/sampling.md``):
``sampled`` NULL (pending), 1 (kept) or 0 (spans dropped; ``skeleton`` keeps the columns its
summary is derived from, until a decision keeps the trace), ``sticky`` (kept for a problem: its
session's later traces are kept too), ``kept_because`` and ``marks`` (JSON lists of reasons),
``seen_ns`` (when its latest span was stored) and ``span_bytes`` (estimated size of its spans).
Traces without a row are kept."""
Index(
    "trace_sampling_due",
    trace_sampling.c.seen_ns,
    sqlite_where=trace_sampling.c.sampled.is_(None),
    postgresql_where=trace_sampling.c.sampled.is_(None),
)

sampling_stats: Final = Table(
    "sampling_stats",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    _int("kept", False),
    _int("dropped", False),
    _int("spans_dropped", False),
    _int("bytes_saved", False),
)
"""One row (id 1): decisions taken since sampling started and the bytes they freed (estimate)."""

live_spans: Final = Table(
    "live_spans",
    metadata,
    *(column._copy() for column in spans.columns),
    _text("input_value"),
    _text("input_mime"),
    _int("last_seen_ns", False),
    _int("deadline_ns", False),
    PrimaryKeyConstraint("trace_id", "span_id"),
    sqlite_with_rowid=False,
)
"""Spans still running (live records): the span columns (``end_ns`` = ``start_ns`` until they
end), the input known at start, when the last record arrived, and when the span counts as
abandoned (its sender's heartbeats stopped). A finished span deletes its row. Not partitioned."""
Index("live_spans_deadline", live_spans.c.deadline_ns)

plyra_meta: Final = Table(
    "plyra_meta",
    metadata,
    Column("key", Text, primary_key=True),
    _text("value", False),
)
"""Store-wide facts: ``schema_version`` (both stores; SQLite also mirrors it in user_version)."""

PAYLOAD_COLUMNS: Final = tuple(c.name for c in span_payloads.columns)
SPAN_COLUMNS: Final = tuple(c.name for c in spans.columns)
TRACE_COLUMNS: Final = tuple(c.name for c in traces.columns)
USAGE_COLUMNS: Final = tuple(c.name for c in usage.columns)
HANDOFF_COLUMNS: Final = tuple(c.name for c in handoffs.columns)
GUARD_COLUMNS: Final = tuple(c.name for c in guards.columns)
SAMPLING_COLUMNS: Final = tuple(c.name for c in trace_sampling.columns)
LIVE_COLUMNS: Final = tuple(c.name for c in live_spans.columns)
DERIVE_COLUMNS: Final = (
    "trace_id",
    "span_id",
    "parent_id",
    "name",
    "service",
    "project",
    "own_agent",
    "agent",
    "start_ns",
    "end_ns",
    "status",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost",
    "model",
    "provider",
    "session_id",
    "user_id",
    "handoff_from",
    "handoff_to",
    "handoff_protocol",
)
"""The span columns :func:`~plyra_trace.collector.summary.derive` reads back for a known trace."""
