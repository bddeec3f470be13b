"""Every read (and API-key write) of the collector, written once in SQLAlchemy Core for both stores.

:class:`SqlReads` needs only an engine; the stores subclass it and add their bulk write path.
A lost database connection surfaces as :class:`StorageUnavailable` (the API answers 503).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.elements import ColumnElement

from plyra_trace.collector.guards import bucket_ns
from plyra_trace.collector.model import CostDimension, GuardFilter, Page, Row, TraceFilter
from plyra_trace.collector.sampling.decide import TraceFacts
from plyra_trace.collector.storage import StorageUnavailable, _sampling
from plyra_trace.collector.storage import _tables as t
from plyra_trace.collector.storage._dialect import (
    PG_TRACE_LOCKS,
    distinct_list,
    isum,
    p95,
    p95_value,
)
from plyra_trace.collector.storage._rollups import (
    EDGE_MEASURES,
    TRACE_DIMENSIONS,
    USAGE_DIMENSIONS,
    Window,
    between,
    day_of,
    dimension_rows,
    edge_rows,
    p95_of,
    subtract_traces,
)

_SUMMED: Final = (
    "traces",
    "spans",
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "priced",
    "unpriced",
)
_HOT: Final = [c for c in t.spans.c if c.name != "attributes"]
_RETENTION_TABLES: Final = (
    t.spans,
    t.span_payloads,
    t.live_spans,
    t.handoffs,
    t.usage,
    t.guards,
    t.trace_sampling,
    t.traces,
)
_SAMPLED: Final = t.traces.outerjoin(
    t.trace_sampling, t.trace_sampling.c.trace_id == t.traces.c.trace_id
)
"""Traces with their tail-sampling state (none for traces stored while sampling was off)."""
_WITH_SAMPLING: Final = (
    t.traces,
    t.trace_sampling.c.trace_id.is_not(None).label("tracked"),
    t.trace_sampling.c.sampled,
    t.trace_sampling.c.kept_because,
)
_RECENT_TRACES: Final = 5  # trace ids listed per Guards row


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


def is_connection_error(error: BaseException) -> bool:
    """True when an error means the database is gone (worth a 503 and a retry), not bad SQL."""
    if isinstance(error, OperationalError):
        return True
    if isinstance(error, DBAPIError):
        return bool(error.connection_invalidated)
    name = type(error).__module__
    return name.startswith("psycopg") and type(error).__name__ in (
        "OperationalError",
        "InterfaceError",
    )


def _uses(column: Any, value: str) -> ColumnElement[bool]:
    """The trace has a usage row (an agent, service... of its spans) with this value."""
    return exists().where(t.usage.c.trace_id == t.traces.c.trace_id, column == value)


def _trace_row(row: Row) -> Row:
    for flag in ("complete", "running", "abandoned"):
        if flag in row:
            row[flag] = bool(row[flag])
    if "tracked" in row:
        # Untracked traces (stored while sampling was off) are kept; tracked ones say their
        # decision: True kept, False spans sampled out, None pending.
        sampled = row.pop("sampled")
        row["sampled"] = None if row.pop("tracked") and sampled is None else sampled != 0
        reasons = row.pop("kept_because")
        row["kept_because"] = json.loads(reasons) if reasons else None
    return row


def _has_live(now: int, abandoned: bool) -> ColumnElement[bool]:
    """The trace has a live span that is still running (or, ``abandoned``, whose heartbeats
    stopped: its deadline passed)."""
    live = t.live_spans.c
    due = live.deadline_ns < now if abandoned else live.deadline_ns >= now
    return exists().where(live.trace_id == t.traces.c.trace_id, due)


def _summaries(now: int) -> Select[Any]:
    """Trace summary rows with their tail-sampling state and their ``running`` and
    ``abandoned`` flags (computed now)."""
    return select(
        *_WITH_SAMPLING,
        _has_live(now, False).label("running"),
        _has_live(now, True).label("abandoned"),
    ).select_from(_SAMPLED)


def _live_row(row: Row, now: int) -> Row:
    """A live record as the API shows a span: no end yet, ``running`` or ``abandoned`` (its
    heartbeats stopped) with the last heartbeat time; ``duration_ns`` is the time so far."""
    seen, deadline = row.pop("last_seen_ns"), row.pop("deadline_ns")
    abandoned = deadline < now
    row["end_ns"] = None
    row["duration_ns"] = max(0, (seen if abandoned else now) - row["start_ns"])
    row["running"] = not abandoned
    row["abandoned"] = abandoned
    row["last_heartbeat_ns"] = seen
    return row


def _page(rows: list[Row], limit: int, time_key: str, id_key: str) -> Page:
    more = len(rows) > limit
    items = rows[:limit]
    cursor = encode_cursor(items[-1][time_key], items[-1][id_key]) if more and items else None
    return Page(items=items, next_cursor=cursor)


class SqlReads:
    """The read half of :class:`~plyra_trace.collector.storage.Storage`, over one engine."""

    engine: Engine

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            if is_connection_error(error):
                raise StorageUnavailable(str(error).splitlines()[0]) from error
            raise

    def _rows(self, statement: Any) -> list[Row]:
        with self._guard(), self.engine.connect() as conn:
            result = conn.execute(statement)
            names = list(result.keys())
            return [dict(zip(names, row, strict=True)) for row in result.all()]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self._guard(), self.engine.begin() as conn:
            yield conn

    def list_traces(self, where: TraceFilter, cursor: str | None, limit: int) -> Page:
        """Trace summaries matching ``where``, newest first, keyset-paginated."""
        tr = t.traces.c
        clauses = between(tr.start_ns, where.since_ns, where.until_ns)
        for column, value in (
            (tr.project, where.project),
            (tr.session_id, where.session_id),
            (tr.user_id, where.user_id),
            (tr.status, where.status),
        ):
            if value is not None:
                clauses.append(column == value)
        if where.min_duration_ns is not None:
            clauses.append(tr.duration_ns >= where.min_duration_ns)
        if where.min_cost is not None:
            clauses.append(tr.cost >= where.min_cost)
        if where.service is not None:
            clauses.append(_uses(t.usage.c.service, where.service))
        if where.agent is not None:
            clauses.append(_uses(t.usage.c.agent, where.agent))
        if where.guard_policy is not None or where.guard_action is not None:
            g = t.guards.c
            decided = [g.trace_id == tr.trace_id]
            if where.guard_policy is not None:
                decided.append(g.policy == where.guard_policy)
            if where.guard_action is not None:
                decided.append(g.action == where.guard_action)
            clauses.append(exists().where(*decided))
        if where.text:
            named = exists().where(
                t.spans.c.trace_id == tr.trace_id,
                t.spans.c.name.icontains(where.text, autoescape=True),
            )
            clauses.append(or_(tr.root_name.icontains(where.text, autoescape=True), named))
        now = time.time_ns()
        for wanted, abandoned in ((where.running, False), (where.abandoned, True)):
            if wanted is not None:
                flag = _has_live(now, abandoned)
                clauses.append(flag if wanted else ~flag)
        if cursor:
            start, key = decode_cursor(cursor)
            clauses.append(or_(tr.start_ns < start, and_(tr.start_ns == start, tr.trace_id < key)))
        statement = (
            _summaries(now)
            .where(*clauses)
            .order_by(tr.start_ns.desc(), tr.trace_id.desc())
            .limit(limit + 1)
        )
        rows = [_trace_row(r) for r in self._rows(statement)]
        return _page(rows, limit, "start_ns", "trace_id")

    def get_trace(self, trace_id: str) -> Row | None:
        """Summary plus every span (hot columns and attributes), ordered by start time."""
        now = time.time_ns()
        found = self._rows(_summaries(now).where(t.traces.c.trace_id == trace_id))
        if not found:
            return None
        trace = _trace_row(found[0])
        trace["spans"] = self._rows(
            select(t.spans)
            .where(t.spans.c.trace_id == trace_id)
            .order_by(t.spans.c.start_ns, t.spans.c.span_id)
        )
        live = t.live_spans.c
        running = self._rows(
            select(t.live_spans)
            .where(live.trace_id == trace_id)
            .order_by(live.start_ns, live.span_id)
        )
        trace["spans"] += [_live_row(row, now) for row in running]
        return trace

    def get_span(self, trace_id: str, span_id: str) -> Row | None:
        """One span joined with its cold payload (resource, events, input and output)."""
        s, p, r = t.spans, t.span_payloads, t.resources
        statement = (
            select(
                s,
                r.c.attributes.label("resource"),
                p.c.events,
                p.c.input_value,
                p.c.input_mime,
                p.c.output_value,
                p.c.output_mime,
            )
            .select_from(
                s.outerjoin(
                    p, and_(p.c.trace_id == s.c.trace_id, p.c.span_id == s.c.span_id)
                ).outerjoin(r, r.c.resource_id == s.c.resource_id)
            )
            .where(s.c.trace_id == trace_id, s.c.span_id == span_id)
        )
        rows = self._rows(statement) or self._live_span(trace_id, span_id)
        if not rows:
            return None
        span = rows[0]
        span["resource"] = span["resource"] or {}
        span["events"] = span["events"] or []
        return span

    def _live_span(self, trace_id: str, span_id: str) -> list[Row]:
        """A running span as :meth:`get_span` shows one (no output or events yet)."""
        live, r = t.live_spans, t.resources
        rows = self._rows(
            select(live, r.c.attributes.label("resource"))
            .select_from(live.outerjoin(r, r.c.resource_id == live.c.resource_id))
            .where(live.c.trace_id == trace_id, live.c.span_id == span_id)
        )
        now = time.time_ns()
        return [
            {**_live_row(row, now), "events": [], "output_value": None, "output_mime": None}
            for row in rows
        ]

    def trace_spans(self, trace_ids: Sequence[str]) -> list[Row]:
        """Hot columns of all spans of the given traces."""
        if not trace_ids:
            return []
        s = t.spans.c
        return self._rows(
            select(*_HOT)
            .where(s.trace_id.in_(list(trace_ids)))
            .order_by(s.trace_id, s.start_ns, s.span_id)
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
        tr = t.traces.c
        clauses = between(tr.start_ns, since_ns, until_ns)
        if root_name is not None:
            clauses.append(tr.root_name == root_name)
        if agent is not None:
            clauses.append(_uses(t.usage.c.agent, agent))
        statement = (
            select(tr.trace_id)
            .where(*clauses)
            .order_by(tr.start_ns.desc(), tr.trace_id.desc())
            .limit(limit)
        )
        return [r["trace_id"] for r in self._rows(statement)]

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """One read transaction: roll-ups and base rows seen at one instant."""
        with self._guard(), self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def agents_graph(self, since_ns: int | None, until_ns: int | None) -> Row:
        """Agents as nodes and handoffs as edges (count, errors, latency avg/p95, cost), for the
        traces that started in the window; p95 from 5% latency buckets, the rest exact."""
        window = Window(since_ns, until_ns)
        with self._snapshot() as conn:
            agent_rows = dimension_rows(conn, "agent", window)
            sums, histogram = edge_rows(conn, window)
        nodes_by_id: dict[str, list[Any]] = {}
        for row in agent_rows:
            if row["key"] is not None:
                node = nodes_by_id.setdefault(row["key"], [0, 0, 0, 0.0, 0, 0])
                for i, m in enumerate(("spans", "traces", "errors", "cost", "priced")):
                    node[i] += row[m]
                node[5] += row["total_tokens"]
        nodes = [
            {
                "id": agent,
                "spans": int(n[0]),
                "traces": int(n[1]),
                "errors": int(n[2]),
                "cost": n[3] if n[4] else None,
                "tokens": int(n[5]),
            }
            for agent, n in sorted(nodes_by_id.items())
            if n[0] > 0
        ]
        edge_sums: dict[tuple[str, str, str], list[Any]] = {}
        for row in sums:
            entry = edge_sums.setdefault(
                (row["from_agent"], row["to_agent"], row["protocol"]), [0, 0, 0, 0.0, 0]
            )
            for i, m in enumerate(EDGE_MEASURES):
                entry[i] += row[m] or 0
        buckets: dict[tuple[str, str, str], dict[int, int]] = {}
        for row in histogram:
            counts = buckets.setdefault((row["from_agent"], row["to_agent"], row["protocol"]), {})
            counts[row["bucket"]] = counts.get(row["bucket"], 0) + int(row["count"])
        edges = [
            {
                "from": source,
                "to": target,
                "protocol": protocol,
                "count": int(count),
                "errors": int(errors),
                "avg_ns": int(duration) // int(count),
                "cost": cost if priced else None,
                "p95_ns": p95_of(buckets.get((source, target, protocol), {})),
            }
            for (source, target, protocol), (count, errors, duration, cost, priced) in sorted(
                edge_sums.items(), key=lambda kv: (-kv[1][0], kv[0])
            )
            if count > 0
        ]
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

    def guards(self, where: GuardFilter, limit: int) -> Row:
        """Guard decisions per policy and action, a time series of them and the most blocked agents.

        The agent of a decision is its span's effective agent (kept current as traces grow).
        """
        g, s = t.guards.c, t.spans.c
        clauses = between(g.start_ns, where.since_ns, where.until_ns)
        for column, value in ((g.project, where.project), (s.agent, where.agent)):
            if value is not None:
                clauses.append(column == value)
        if where.provider is not None:
            clauses.append(g.provider == where.provider)
        decisions = (
            select(g.policy, g.action, g.provider, g.duration_ns, g.start_ns, g.trace_id, s.agent)
            .select_from(
                t.guards.join(t.spans, and_(s.trace_id == g.trace_id, s.span_id == g.span_id))
            )
            .where(*clauses)
            .subquery("d")
        )
        d = decisions.c
        count = func.count()
        items = self._rows(
            select(
                d.policy,
                d.action,
                count.label("count"),
                distinct_list(d.agent).label("agents"),
                distinct_list(d.provider).label("providers"),
                func.max(d.start_ns).label("last_ns"),
                p95(d.duration_ns).label("p95_ns"),
            )
            .group_by(d.policy, d.action)
            .order_by(count.desc(), d.policy, d.action)
            .limit(limit)
        )
        rank = (
            func.row_number()
            .over(partition_by=(d.policy, d.action), order_by=d.start_ns.desc())
            .label("n")
        )
        ranked = select(d.policy, d.action, d.trace_id, rank).subquery("r")
        recent: dict[tuple[str, str], list[str]] = {}
        for row in self._rows(
            select(ranked.c.policy, ranked.c.action, ranked.c.trace_id)
            .where(ranked.c.n <= _RECENT_TRACES * 4)
            .order_by(ranked.c.policy, ranked.c.action, ranked.c.n)
        ):
            ids = recent.setdefault((row["policy"], row["action"]), [])
            if row["trace_id"] not in ids and len(ids) < _RECENT_TRACES:
                ids.append(row["trace_id"])
        for item in items:
            item["p95_ns"] = p95_value(item["p95_ns"])
            item["agents"] = sorted(a for a in item["agents"] or () if a is not None)
            item["providers"] = sorted(p for p in item["providers"] or () if p is not None)
            item["trace_ids"] = recent.get((item["policy"], item["action"]), [])
            item["trace_id"] = item["trace_ids"][0] if item["trace_ids"] else None
        (extent,) = self._rows(
            select(func.min(d.start_ns).label("first"), func.max(d.start_ns).label("last"))
        )
        width = start = end = None
        series: list[Row] = []
        if extent["first"] is not None:
            start = where.since_ns if where.since_ns is not None else extent["first"]
            end = where.until_ns if where.until_ns is not None else extent["last"] + 1
            width = bucket_ns(start, end)
            bucket = (d.start_ns - d.start_ns % width).label("t_ns")
            series = self._rows(
                select(d.policy, d.action, bucket, func.count().label("count"))
                .group_by(d.policy, d.action, bucket)
                .order_by(bucket, d.policy, d.action)
            )
        blocks = func.count()
        blocked = self._rows(
            select(d.agent, blocks.label("count"))
            .where(d.action == "block", d.agent.is_not(None))
            .group_by(d.agent)
            .order_by(blocks.desc(), d.agent)
            .limit(10)
        )
        return {
            "items": items,
            "series": series,
            "bucket_ns": width,
            "since_ns": start,
            "until_ns": end,
            "blocked_agents": blocked,
        }

    def session_guards(self, session_id: str, limit: int) -> list[Row]:
        """The guard decisions of a session's traces (every service), in the order they began."""
        g, s, tr = t.guards.c, t.spans.c, t.traces.c
        statement = (
            select(
                g.trace_id,
                g.span_id,
                g.start_ns,
                g.duration_ns,
                g.service,
                g.policy,
                g.action,
                g.provider,
                s.agent,
                s.name,
            )
            .select_from(
                t.traces.join(t.guards, g.trace_id == tr.trace_id).join(
                    t.spans, and_(s.trace_id == g.trace_id, s.span_id == g.span_id)
                )
            )
            .where(tr.session_id == session_id)
            .order_by(g.start_ns, g.span_id)
            .limit(limit)
        )
        return self._rows(statement)

    def cost_breakdown(
        self, by: CostDimension, since_ns: int | None, until_ns: int | None, limit: int
    ) -> list[Row]:
        """Tokens and cost grouped by ``by`` over the traces that started in the window; cost
        None when nothing in the group was priced. Read from the hourly roll-ups."""
        if by == "trace":
            return self._cost_per_trace(since_ns, until_ns, limit)
        if by not in (*USAGE_DIMENSIONS, *TRACE_DIMENSIONS, "day"):
            raise ValueError(f"unknown cost dimension {by!r}")
        window = Window(since_ns, until_ns)
        with self._snapshot() as conn:
            rows = dimension_rows(conn, "project" if by == "day" else by, window)
        per_trace = by in TRACE_DIMENSIONS
        fields = ("traces", "spans") if per_trace else ("llm_calls",)
        totals: dict[Any, Row] = {}
        for row in rows:
            key = day_of(row["hour"]) if by == "day" else row["key"]
            group = totals.setdefault(key, dict.fromkeys(_SUMMED, 0) | {"cost": 0.0})
            for m in (*_SUMMED, "cost"):
                group[m] += row[m] or 0
        out = []
        for key, g in totals.items():
            if (per_trace and (key is None or g["traces"] <= 0)) or (
                not per_trace and g["llm_calls"] <= 0
            ):
                continue
            item: Row = {"key": key}
            for m in fields:
                item["calls" if m == "llm_calls" else m] = int(g[m])
            for m in ("input_tokens", "output_tokens", "total_tokens"):
                item[m] = int(g[m])
            item["cost"] = g["cost"] if g["priced"] else None
            item["unpriced"] = int(g["unpriced"])
            out.append(item)
        out.sort(
            key=lambda i: (i["cost"] is None, -(i["cost"] or 0.0), i["key"] is None, i["key"] or "")
        )
        return out[:limit]

    def _cost_per_trace(self, since_ns: int | None, until_ns: int | None, limit: int) -> list[Row]:
        tr = t.traces.c
        cost = func.sum(tr.cost)
        statement = (
            select(
                tr.trace_id.label("key"),
                func.count().label("traces"),
                *(
                    func.coalesce(isum(tr[column]), 0).label(label)
                    for column, label in (
                        ("span_count", "spans"),
                        ("input_tokens", "input_tokens"),
                        ("output_tokens", "output_tokens"),
                        ("total_tokens", "total_tokens"),
                    )
                ),
                cost.label("cost"),
                func.coalesce(isum(tr.unpriced_count), 0).label("unpriced"),
            )
            .where(*between(tr.start_ns, since_ns, until_ns))
            .group_by(tr.trace_id)
        )
        return self._rows(statement.order_by(cost.is_(None), cost.desc(), tr.trace_id).limit(limit))

    def list_sessions(
        self, since_ns: int | None, until_ns: int | None, cursor: str | None, limit: int
    ) -> Page:
        """Sessions newest first (by their latest trace), keyset-paginated.

        ``users`` lists the session's distinct users; ``user_id`` (the smallest) stays for
        clients of 0.3.0.
        """
        tr = t.traces.c
        last = func.max(tr.start_ns)
        statement: Select[Any] = (
            select(
                tr.session_id,
                func.count().label("traces"),
                isum(tr.span_count).label("spans"),
                isum(tr.error_count).label("errors"),
                isum(tr.total_tokens).label("total_tokens"),
                func.sum(tr.cost).label("cost"),
                isum(tr.unpriced_count).label("unpriced"),
                func.min(tr.start_ns).label("first_ns"),
                last.label("last_start_ns"),
                func.max(tr.end_ns).label("last_end_ns"),
                func.min(tr.user_id).label("user_id"),
                distinct_list(tr.user_id).label("users"),
            )
            .where(tr.session_id.is_not(None), *between(tr.start_ns, since_ns, until_ns))
            .group_by(tr.session_id)
        )
        if cursor:
            start, key = decode_cursor(cursor)
            statement = statement.having(
                or_(last < start, and_(last == start, tr.session_id < key))
            )
        rows = self._rows(statement.order_by(last.desc(), tr.session_id.desc()).limit(limit + 1))
        for row in rows:
            row["users"] = sorted(u for u in row["users"] or () if u is not None)
        return _page(rows, limit, "last_start_ns", "session_id")

    def facets(self, since_ns: int | None, until_ns: int | None) -> Row:
        """Distinct values of each filterable dimension, from the usage roll-up."""
        u = t.usage.c
        window = between(u.start_ns, since_ns, until_ns)
        out: Row = {}
        for name, column in (
            ("projects", u.project),
            ("services", u.service),
            ("agents", u.agent),
            ("models", u.model),
        ):
            rows = self._rows(
                select(column.label("value"))
                .distinct()
                .where(column.is_not(None), *window)
                .order_by(column)
                .limit(1000)
            )
            out[name] = [row["value"] for row in rows]
        return out

    def add_key(self, key_id: str, name: str, secret_hash: str, created_ns: int) -> None:
        """Insert an API key row (committed at once)."""
        with self._transaction() as conn:
            conn.execute(
                insert(t.api_keys).values(
                    key_id=key_id, name=name, secret_hash=secret_hash, created_ns=created_ns
                )
            )

    def list_keys(self) -> list[Row]:
        """All keys, oldest first, without their hashes."""
        k = t.api_keys.c
        return self._rows(
            select(k.key_id, k.name, k.created_ns, k.revoked_ns).order_by(k.created_ns, k.key_id)
        )

    def revoke_key(self, key_id: str, revoked_ns: int) -> bool:
        """Mark a key revoked; True if an active key was revoked."""
        k = t.api_keys.c
        with self._transaction() as conn:
            result = conn.execute(
                update(t.api_keys)
                .where(k.key_id == key_id, k.revoked_ns.is_(None))
                .values(revoked_ns=revoked_ns)
            )
        return result.rowcount == 1

    def key_hash(self, key_id: str) -> str | None:
        """Hash of an active key."""
        k = t.api_keys.c
        rows = self._rows(select(k.secret_hash).where(k.key_id == key_id, k.revoked_ns.is_(None)))
        return str(rows[0]["secret_hash"]) if rows else None

    def count_spans(self) -> int:
        """Number of stored spans."""
        return int(self._rows(select(func.count().label("n")).select_from(t.spans))[0]["n"])

    def trace_summaries(self, trace_ids: Sequence[str]) -> list[Row]:
        """Summary rows of the given traces (what the live stream announces)."""
        if not trace_ids:
            return []
        statement = _summaries(time.time_ns()).where(t.traces.c.trace_id.in_(list(trace_ids)))
        return [_trace_row(r) for r in self._rows(statement)]

    # --- tail sampling (the decision: plyra_trace.collector.sampling) ---------------------------
    sample_new = False
    """Whether traces seen for the first time wait for a sampling decision (the writes read it)."""

    def enable_sampling(self) -> None:
        """From now on, traces seen for the first time wait for a sampling decision."""
        self.sample_new = True

    def pending_decisions(self, now_ns: int, wait_ns: int, limit: int) -> list[TraceFacts]:
        """Undecided traces whose last span was stored ``wait_ns`` before ``now_ns``."""
        rows = self._rows(_sampling.pending_statement(now_ns, wait_ns, limit))
        return [_sampling.facts(row) for row in rows]

    def sticky_sessions(self, session_ids: Sequence[str]) -> set[str]:
        """Sessions among ``session_ids`` holding a trace kept for a problem."""
        if not session_ids:
            return set()
        rows = self._rows(_sampling.sticky_statement(sorted(set(session_ids))))
        return {row["session_id"] for row in rows}

    def sampling_stats(self) -> Row:
        """Kept, dropped and pending traces, spans dropped and bytes freed (estimate)."""
        found = self._rows(_sampling.stats_statement())
        stats = found[0] if found else _sampling.empty_stats()
        return {**stats, **self._rows(_sampling.pending_statement_count())[0]}

    # --- retention ----------------------------------------------------------------------------
    def _expired_ids(self, conn: Connection, cutoff_ns: int, max_traces: int) -> list[str]:
        tr = t.traces.c
        statement = (
            select(tr.trace_id)
            .where(tr.start_ns < cutoff_ns)
            .order_by(tr.start_ns)
            .limit(max_traces)
        )
        return [row[0] for row in conn.execute(statement)]

    def _delete_traces(self, conn: Connection, trace_ids: list[str]) -> None:
        if conn.dialect.name == "postgresql":
            # The writers' per-trace locks: a trace re-derived meanwhile is subtracted once.
            conn.exec_driver_sql(PG_TRACE_LOCKS, (list(trace_ids),))
        subtract_traces(conn, trace_ids)
        for table in _RETENTION_TABLES:
            conn.execute(delete(table).where(table.c.trace_id.in_(trace_ids)))
