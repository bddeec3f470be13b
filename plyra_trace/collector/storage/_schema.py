"""The SQLite schema: hot span rows, cold span payloads, trace summaries and handoffs."""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 1

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    otel_kind TEXT NOT NULL,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    project TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    status INTEGER NOT NULL,
    status_message TEXT NOT NULL,
    own_agent TEXT,
    agent TEXT,
    session_id TEXT,
    user_id TEXT,
    model TEXT,
    provider TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_write_tokens INTEGER,
    total_tokens INTEGER,
    cost REAL,
    cost_source TEXT,
    handoff_from TEXT,
    handoff_to TEXT,
    handoff_protocol TEXT,
    attributes TEXT NOT NULL,
    resource_id INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_id ON spans (trace_id, span_id);
CREATE TABLE IF NOT EXISTS resources (
    resource_id INTEGER PRIMARY KEY,
    attributes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS span_payloads (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    events TEXT NOT NULL,
    input_value TEXT,
    input_mime TEXT,
    output_value TEXT,
    output_mime TEXT,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    root_span_id TEXT NOT NULL,
    root_name TEXT NOT NULL,
    root_service TEXT NOT NULL,
    complete INTEGER NOT NULL,
    project TEXT NOT NULL,
    services TEXT NOT NULL,
    agents TEXT NOT NULL,
    span_count INTEGER NOT NULL,
    error_count INTEGER NOT NULL,
    status TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    total_tokens INTEGER NOT NULL,
    cost REAL,
    unpriced_count INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    session_id TEXT,
    user_id TEXT
);
CREATE INDEX IF NOT EXISTS traces_start ON traces (start_ns DESC, trace_id DESC);
CREATE INDEX IF NOT EXISTS traces_session ON traces (session_id, start_ns);
CREATE INDEX IF NOT EXISTS traces_user ON traces (user_id, start_ns);
CREATE INDEX IF NOT EXISTS traces_root_name ON traces (root_name, start_ns);
CREATE TABLE IF NOT EXISTS handoffs (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    from_agent TEXT NOT NULL,
    to_agent TEXT NOT NULL,
    protocol TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    error INTEGER NOT NULL,
    cost REAL,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS handoffs_start ON handoffs (start_ns);
CREATE TABLE IF NOT EXISTS usage (
    trace_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    agent TEXT,
    service TEXT NOT NULL,
    project TEXT NOT NULL,
    model TEXT,
    provider TEXT,
    spans INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    llm_calls INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    total_tokens INTEGER NOT NULL,
    cost REAL,
    unpriced INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_trace ON usage (trace_id, agent);
CREATE INDEX IF NOT EXISTS usage_start ON usage (start_ns);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    revoked_ns INTEGER
);
CREATE INDEX IF NOT EXISTS handoffs_edge ON handoffs (from_agent, to_agent, protocol);
"""

SPAN_COLUMNS: Final = (
    "trace_id",
    "span_id",
    "parent_id",
    "name",
    "otel_kind",
    "kind",
    "service",
    "project",
    "start_ns",
    "end_ns",
    "duration_ns",
    "status",
    "status_message",
    "own_agent",
    "agent",
    "session_id",
    "user_id",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "total_tokens",
    "cost",
    "cost_source",
    "handoff_from",
    "handoff_to",
    "handoff_protocol",
    "attributes",
    "resource_id",
)

TRACE_COLUMNS: Final = (
    "trace_id",
    "root_span_id",
    "root_name",
    "root_service",
    "complete",
    "project",
    "services",
    "agents",
    "span_count",
    "error_count",
    "status",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost",
    "unpriced_count",
    "start_ns",
    "end_ns",
    "duration_ns",
    "session_id",
    "user_id",
)

USAGE_COLUMNS: Final = (
    "trace_id",
    "day",
    "start_ns",
    "agent",
    "service",
    "project",
    "model",
    "provider",
    "spans",
    "errors",
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost",
    "unpriced",
)

HANDOFF_COLUMNS: Final = (
    "trace_id",
    "span_id",
    "from_agent",
    "to_agent",
    "protocol",
    "start_ns",
    "duration_ns",
    "error",
    "cost",
)
