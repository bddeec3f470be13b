"""Embedded SQLite storage (WAL): one writer connection, one read connection per reader thread.

The only module that speaks SQL. Writes commit in one transaction per batch and recompute the
summaries of the traces they touch from all stored spans, so out-of-order arrival is harmless.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Final

from plyra_trace.collector.model import (
    CostDimension,
    Page,
    Row,
    SpanRecord,
    TraceFilter,
    WriteResult,
)
from plyra_trace.collector.storage._schema import (
    HANDOFF_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    SPAN_COLUMNS,
    TRACE_COLUMNS,
    USAGE_COLUMNS,
)
from plyra_trace.collector.summary import TraceDerivation, derive

_DERIVE_COLUMNS: Final = (
    "trace_id, span_id, parent_id, name, service, project, own_agent, agent, start_ns, end_ns,"
    " status, input_tokens, output_tokens, total_tokens, cost, model, provider, session_id,"
    " user_id, handoff_from, handoff_to, handoff_protocol"
)
_HOT_COLUMNS: Final = ", ".join(c for c in SPAN_COLUMNS if c != "attributes")
_INSERT_SPAN: Final = (
    f"INSERT OR REPLACE INTO spans ({', '.join(SPAN_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(SPAN_COLUMNS))})"
)
_INSERT_PAYLOAD: Final = (
    "INSERT OR REPLACE INTO span_payloads (trace_id, span_id, events, input_value,"
    " input_mime, output_value, output_mime) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_TRACE: Final = (
    f"INSERT OR REPLACE INTO traces ({', '.join(TRACE_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(TRACE_COLUMNS))})"
)
_INSERT_HANDOFF: Final = (
    f"INSERT OR REPLACE INTO handoffs ({', '.join(HANDOFF_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(HANDOFF_COLUMNS))})"
)
_INSERT_USAGE: Final = (
    f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) VALUES ({', '.join('?' * len(USAGE_COLUMNS))})"
)
_TRACE_LIST_COLUMNS: Final = ", ".join(f"t.{c}" for c in TRACE_COLUMNS)
_USAGE_DIMENSIONS: Final = {
    "model": "model",
    "agent": "agent",
    "service": "service",
    "project": "project",
    "day": "date(day * 86400, 'unixepoch')",
}
_TRACE_DIMENSIONS: Final = {"session": "session_id", "user": "user_id", "trace": "trace_id"}


_ENCODE: Final = json.JSONEncoder(default=str, check_circular=False, ensure_ascii=False).encode
"""One encoder for every attribute blob (``json.dumps(default=...)`` builds one per call)."""


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.row_factory = _dict_row
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def encode_cursor(start_ns: int, key: str) -> str:
    """An opaque keyset cursor (time and tie-breaking key)."""
    return base64.urlsafe_b64encode(json.dumps([start_ns, key]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The keyset a cursor stands for; ValueError when it was not made by :func:`encode_cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start, key = json.loads(raw)
    except Exception:
        raise ValueError("invalid cursor") from None
    if not isinstance(start, int) or not isinstance(key, str):
        raise ValueError("invalid cursor")
    return start, key


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _window(column: str, since_ns: int | None, until_ns: int | None) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if since_ns is not None:
        clauses.append(f"{column} >= ?")
        params.append(since_ns)
    if until_ns is not None:
        clauses.append(f"{column} < ?")
        params.append(until_ns)
    return clauses, params


def _where(clauses: Sequence[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""


def _trace_row(row: Row) -> Row:
    row["services"] = json.loads(row["services"])
    row["agents"] = json.loads(row["agents"])
    row["complete"] = bool(row["complete"])
    return row


def _p95(values: Sequence[int]) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-95 * len(ordered) // 100) - 1))]


class SQLiteStorage:
    """:class:`~plyra_trace.collector.storage.Storage` on one SQLite file in WAL mode."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._writer = _connect(path)
        self._writer.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode survives a process crash (kill -9); FULL also survives power loss.
        self._writer.execute(
            f"PRAGMA synchronous = {'FULL' if synchronous == 'FULL' else 'NORMAL'}"
        )
        self._writer.execute("PRAGMA foreign_keys = OFF")
        self._writer.executescript(SCHEMA)
        self._writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._write_lock = threading.Lock()

    # --- writing ------------------------------------------------------------------------------
    def write(self, spans: Sequence[SpanRecord]) -> WriteResult:
        """Insert spans, recompute their traces and handoffs, commit; all or nothing."""
        if not spans:
            return WriteResult()
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = self._write(conn, spans)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return result

    def _write(self, conn: sqlite3.Connection, spans: Sequence[SpanRecord]) -> WriteResult:
        by_trace: dict[str, dict[str, SpanRecord]] = {}
        for span in spans:
            by_trace.setdefault(span.trace_id, {})[span.span_id] = span  # last copy wins
        known = {
            row["trace_id"]
            for row in conn.execute(
                "SELECT trace_id FROM traces WHERE trace_id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(by_trace)),),
            )
        }
        derived: dict[str, TraceDerivation] = {}
        # Traces seen for the first time are wholly in this batch: derive them before inserting,
        # so their spans go in with the right agent and nothing needs reading back.
        for trace_id, records in by_trace.items():
            if trace_id not in known:
                derived[trace_id] = derive(trace_id, [_derive_row(r) for r in records.values()])
                agents = derived[trace_id].agents
                for record in records.values():
                    record.agent_effective = agents.get(record.span_id, record.agent)
        resources = _Resources()
        conn.executemany(
            _INSERT_SPAN,
            [_span_values(s, resources.id_of(s)) for r in by_trace.values() for s in r.values()],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO resources (resource_id, attributes) VALUES (?, ?)",
            resources.new.items(),
        )
        conn.executemany(
            _INSERT_PAYLOAD,
            [
                _payload_values(s)
                for s in spans
                if s.events or s.input_value is not None or s.output_value is not None
            ],
        )
        agent_updates: list[tuple[str | None, str, str]] = []
        old_edges: set[tuple[str, str, str]] = set()
        if known:
            known_json = json.dumps(sorted(known))
            rows = conn.execute(
                f"SELECT {_DERIVE_COLUMNS} FROM spans"
                " WHERE trace_id IN (SELECT value FROM json_each(?))",
                (known_json,),
            ).fetchall()
            grouped: dict[str, list[Row]] = {}
            for row in rows:
                grouped.setdefault(row["trace_id"], []).append(row)
            for trace_id, trace_rows in grouped.items():
                derived[trace_id] = derive(trace_id, trace_rows)
                agents = derived[trace_id].agents
                for row in trace_rows:
                    agent = agents.get(row["span_id"], row["own_agent"])
                    if agent != row["agent"]:
                        agent_updates.append((agent, trace_id, row["span_id"]))
            old_edges = {
                (h["from_agent"], h["to_agent"], h["protocol"])
                for h in conn.execute(
                    "SELECT from_agent, to_agent, protocol FROM handoffs"
                    " WHERE trace_id IN (SELECT value FROM json_each(?))",
                    (known_json,),
                )
            }
            for table in ("handoffs", "usage"):
                conn.execute(
                    f"DELETE FROM {table} WHERE trace_id IN (SELECT value FROM json_each(?))",
                    (known_json,),
                )
        if agent_updates:
            conn.executemany(
                "UPDATE spans SET agent = ? WHERE trace_id = ? AND span_id = ?", agent_updates
            )
        conn.executemany(_INSERT_TRACE, [_summary_values(d.summary) for d in derived.values()])
        handoffs = [h for d in derived.values() for h in d.handoffs]
        conn.executemany(_INSERT_HANDOFF, [[h[c] for c in HANDOFF_COLUMNS] for h in handoffs])
        conn.executemany(
            _INSERT_USAGE,
            [[u[c] for c in USAGE_COLUMNS] for d in derived.values() for u in d.usage],
        )
        return WriteResult(
            spans=len(spans),
            traces=[d.summary for d in derived.values()],
            edges=_touched_edges(handoffs, old_edges),
        )

    # --- reading ------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return self._reader().execute(sql, tuple(params)).fetchall()

    def list_traces(self, where: TraceFilter, cursor: str | None, limit: int) -> Page:
        """Trace summaries matching ``where``, newest first, keyset-paginated."""
        clauses, params = _window("t.start_ns", where.since_ns, where.until_ns)
        for column, value in (
            ("t.project", where.project),
            ("t.session_id", where.session_id),
            ("t.user_id", where.user_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if where.status is not None:
            clauses.append("t.status = ?")
            params.append(where.status)
        if where.min_duration_ns is not None:
            clauses.append("t.duration_ns >= ?")
            params.append(where.min_duration_ns)
        if where.min_cost is not None:
            clauses.append("t.cost >= ?")
            params.append(where.min_cost)
        if where.service is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM usage u WHERE u.trace_id = t.trace_id AND u.service = ?)"
            )
            params.append(where.service)
        if where.agent is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM usage u WHERE u.trace_id = t.trace_id AND u.agent = ?)"
            )
            params.append(where.agent)
        if where.text:
            clauses.append(
                "(t.root_name LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM spans s"
                " WHERE s.trace_id = t.trace_id AND s.name LIKE ? ESCAPE '\\'))"
            )
            params += [_like(where.text)] * 2
        if cursor:
            start, key = decode_cursor(cursor)
            clauses.append("(t.start_ns < ? OR (t.start_ns = ? AND t.trace_id < ?))")
            params += [start, start, key]
        rows = self._query(
            f"SELECT {_TRACE_LIST_COLUMNS} FROM traces t {_where(clauses)}"
            " ORDER BY t.start_ns DESC, t.trace_id DESC LIMIT ?",
            [*params, limit + 1],
        )
        more = len(rows) > limit
        items = [_trace_row(r) for r in rows[:limit]]
        next_cursor = (
            encode_cursor(items[-1]["start_ns"], items[-1]["trace_id"]) if more and items else None
        )
        return Page(items=items, next_cursor=next_cursor)

    def get_trace(self, trace_id: str) -> Row | None:
        """Summary plus every span (hot columns and attributes), ordered by start time."""
        found = self._query(
            f"SELECT {', '.join(TRACE_COLUMNS)} FROM traces WHERE trace_id = ?", [trace_id]
        )
        if not found:
            return None
        trace = _trace_row(found[0])
        spans = self._query(
            f"SELECT {', '.join(SPAN_COLUMNS)} FROM spans WHERE trace_id = ?"
            " ORDER BY start_ns, span_id",
            [trace_id],
        )
        for span in spans:
            span["attributes"] = json.loads(span["attributes"])
        trace["spans"] = spans
        return trace

    def get_span(self, trace_id: str, span_id: str) -> Row | None:
        """One span joined with its cold payload (resource, events, input and output)."""
        rows = self._query(
            f"SELECT {', '.join('s.' + c for c in SPAN_COLUMNS)}, r.attributes AS resource,"
            " p.events, p.input_value, p.input_mime, p.output_value, p.output_mime FROM spans s"
            " LEFT JOIN span_payloads p ON p.trace_id = s.trace_id AND p.span_id = s.span_id"
            " LEFT JOIN resources r ON r.resource_id = s.resource_id"
            " WHERE s.trace_id = ? AND s.span_id = ?",
            [trace_id, span_id],
        )
        if not rows:
            return None
        span = rows[0]
        span["attributes"] = json.loads(span["attributes"])
        span["resource"] = json.loads(span["resource"] or "{}")
        span["events"] = json.loads(span["events"] or "[]")
        return span

    def trace_spans(self, trace_ids: Sequence[str]) -> list[Row]:
        """Hot columns of all spans of the given traces."""
        if not trace_ids:
            return []
        return self._query(
            f"SELECT {_HOT_COLUMNS} FROM spans WHERE trace_id IN (SELECT value FROM json_each(?))"
            " ORDER BY trace_id, start_ns, span_id",
            [json.dumps(list(trace_ids))],
        )

    def find_trace_ids(
        self,
        *,
        root_name: str | None,
        agent: str | None,
        since_ns: int | None,
        until_ns: int | None,
        limit: int,
    ) -> list[str]:
        """Newest trace ids with the given root name and/or containing the given agent."""
        clauses, params = _window("t.start_ns", since_ns, until_ns)
        if root_name is not None:
            clauses.append("t.root_name = ?")
            params.append(root_name)
        if agent is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM usage u WHERE u.trace_id = t.trace_id AND u.agent = ?)"
            )
            params.append(agent)
        rows = self._query(
            f"SELECT t.trace_id FROM traces t {_where(clauses)}"
            " ORDER BY t.start_ns DESC, t.trace_id DESC LIMIT ?",
            [*params, limit],
        )
        return [r["trace_id"] for r in rows]

    def agents_graph(self, since_ns: int | None, until_ns: int | None) -> Row:
        """Agents as nodes and handoffs as edges (count, errors, latency avg/p95, cost)."""
        clauses, params = _window("start_ns", since_ns, until_ns)
        nodes = self._query(
            "SELECT agent AS id, SUM(spans) AS spans, COUNT(DISTINCT trace_id) AS traces,"
            " SUM(errors) AS errors, SUM(cost) AS cost, SUM(total_tokens) AS tokens FROM usage"
            f" {_where(['agent IS NOT NULL', *clauses])} GROUP BY agent ORDER BY agent",
            params,
        )
        edges = self._query(
            'SELECT from_agent AS "from", to_agent AS "to", protocol, COUNT(*) AS count,'
            " COALESCE(SUM(error), 0) AS errors, CAST(AVG(duration_ns) AS INTEGER) AS avg_ns,"
            " SUM(cost) AS cost, group_concat(duration_ns) AS durations"
            f" FROM handoffs {_where(clauses)} GROUP BY from_agent, to_agent, protocol"
            " ORDER BY count DESC",
            params,
        )
        for edge in edges:
            durations = [int(d) for d in str(edge.pop("durations") or "").split(",") if d]
            edge["p95_ns"] = _p95(durations) if durations else None
        known = {node["id"] for node in nodes}
        for edge in edges:
            for agent in (edge["from"], edge["to"]):
                if agent not in known:
                    known.add(agent)
                    nodes.append(
                        {
                            "id": agent,
                            "spans": 0,
                            "traces": 0,
                            "errors": 0,
                            "cost": None,
                            "tokens": 0,
                        }
                    )
        return {"nodes": nodes, "edges": edges}

    def cost_breakdown(
        self, by: CostDimension, since_ns: int | None, until_ns: int | None, limit: int
    ) -> list[Row]:
        """Tokens and cost grouped by ``by``; cost None when nothing in the group was priced."""
        if by in _USAGE_DIMENSIONS:
            key = _USAGE_DIMENSIONS[by]
            clauses, params = _window("start_ns", since_ns, until_ns)
            return self._query(
                f"SELECT {key} AS key, SUM(llm_calls) AS calls,"
                " SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,"
                " SUM(total_tokens) AS total_tokens, SUM(cost) AS cost, SUM(unpriced) AS unpriced"
                f" FROM usage {_where(clauses)} GROUP BY key HAVING SUM(llm_calls) > 0"
                " ORDER BY cost IS NULL, cost DESC, key LIMIT ?",
                [*params, limit],
            )
        if by not in _TRACE_DIMENSIONS:
            raise ValueError(f"unknown cost dimension {by!r}")
        key = _TRACE_DIMENSIONS[by]
        clauses, params = _window("start_ns", since_ns, until_ns)
        clauses = [f"{key} IS NOT NULL", *clauses]
        return self._query(
            f"SELECT {key} AS key, COUNT(*) AS traces, COALESCE(SUM(span_count), 0) AS spans,"
            " COALESCE(SUM(input_tokens), 0) AS input_tokens,"
            " COALESCE(SUM(output_tokens), 0) AS output_tokens,"
            " COALESCE(SUM(total_tokens), 0) AS total_tokens, SUM(cost) AS cost,"
            " COALESCE(SUM(unpriced_count), 0) AS unpriced"
            f" FROM traces {_where(clauses)} GROUP BY key"
            " ORDER BY cost IS NULL, cost DESC, key LIMIT ?",
            [*params, limit],
        )

    def list_sessions(
        self, since_ns: int | None, until_ns: int | None, cursor: str | None, limit: int
    ) -> Page:
        """Sessions newest first (by their latest trace), keyset-paginated."""
        clauses, params = _window("start_ns", since_ns, until_ns)
        having = ""
        if cursor:
            start, key = decode_cursor(cursor)
            having = "HAVING (MAX(start_ns) < ? OR (MAX(start_ns) = ? AND session_id < ?))"
            having_params: list[Any] = [start, start, key]
        else:
            having_params = []
        rows = self._query(
            "SELECT session_id, COUNT(*) AS traces, SUM(span_count) AS spans,"
            " SUM(error_count) AS errors, SUM(total_tokens) AS total_tokens, SUM(cost) AS cost,"
            " SUM(unpriced_count) AS unpriced, MIN(start_ns) AS first_ns,"
            " MAX(start_ns) AS last_start_ns, MAX(end_ns) AS last_end_ns, MIN(user_id) AS user_id"
            f" FROM traces {_where(['session_id IS NOT NULL', *clauses])} GROUP BY session_id"
            f" {having} ORDER BY last_start_ns DESC, session_id DESC LIMIT ?",
            [*params, *having_params, limit + 1],
        )
        more = len(rows) > limit
        items = rows[:limit]
        next_cursor = (
            encode_cursor(items[-1]["last_start_ns"], items[-1]["session_id"])
            if more and items
            else None
        )
        return Page(items=items, next_cursor=next_cursor)

    def facets(self, since_ns: int | None, until_ns: int | None) -> Row:
        """Distinct values of each filterable dimension, from the usage roll-up."""
        clauses, params = _window("start_ns", since_ns, until_ns)
        out: Row = {}
        for name, column in (
            ("projects", "project"),
            ("services", "service"),
            ("agents", "agent"),
            ("models", "model"),
        ):
            rows = self._query(
                f"SELECT DISTINCT {column} AS value FROM usage"
                f" {_where([f'{column} IS NOT NULL', *clauses])} ORDER BY value LIMIT 1000",
                params,
            )
            out[name] = [row["value"] for row in rows]
        return out

    def add_key(self, key_id: str, name: str, secret_hash: str, created_ns: int) -> None:
        """Insert an API key row (committed at once)."""
        with self._write_lock:
            self._writer.execute(
                "INSERT INTO api_keys (key_id, name, secret_hash, created_ns) VALUES (?, ?, ?, ?)",
                (key_id, name, secret_hash, created_ns),
            )

    def list_keys(self) -> list[Row]:
        """All keys, oldest first, without their hashes."""
        return self._query(
            "SELECT key_id, name, created_ns, revoked_ns FROM api_keys ORDER BY created_ns, key_id"
        )

    def revoke_key(self, key_id: str, revoked_ns: int) -> bool:
        """Mark a key revoked; True if an active key was revoked."""
        with self._write_lock:
            cursor = self._writer.execute(
                "UPDATE api_keys SET revoked_ns = ? WHERE key_id = ? AND revoked_ns IS NULL",
                (revoked_ns, key_id),
            )
        return cursor.rowcount == 1

    def key_hash(self, key_id: str) -> str | None:
        """Hash of an active key."""
        rows = self._query(
            "SELECT secret_hash FROM api_keys WHERE key_id = ? AND revoked_ns IS NULL", [key_id]
        )
        return str(rows[0]["secret_hash"]) if rows else None

    def count_spans(self) -> int:
        """Number of stored spans."""
        return int(self._query("SELECT COUNT(*) AS n FROM spans")[0]["n"])

    def close(self) -> None:
        """Close the writer and every reader connection."""
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()


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
        _ENCODE(s.attributes),
        resource_id,
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
        {"from": f, "to": t, "protocol": p, "count": c, "errors": e, "cost": cost}
        for (f, t, p), (c, e, cost) in sorted(counts.items())
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


def _payload_values(s: SpanRecord) -> tuple[Any, ...]:
    return (
        s.trace_id,
        s.span_id,
        _ENCODE(s.events) if s.events else "[]",
        s.input_value,
        s.input_mime,
        s.output_value,
        s.output_mime,
    )


def _summary_values(summary: Row) -> list[Any]:
    values = []
    for column in TRACE_COLUMNS:
        value = summary[column]
        if column in ("services", "agents"):
            value = json.dumps(value)
        elif column == "complete":
            value = int(value)
        values.append(value)
    return values
