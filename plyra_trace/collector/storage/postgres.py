"""PostgreSQL storage: the shared query layer, COPY for bulk ingest, day partitions, replicas.

Any number of collector processes may share one database. Each write takes per-trace advisory
transaction locks (in a fixed order, so replicas never deadlock) before reading a trace back, so
summaries, costs and edges stay exact when spans of one trace reach different replicas at once.
Each commit sends a small NOTIFY; every replica LISTENs and announces the others' writes on its
own live stream. Span rows and payloads live in one partition per UTC day, created on demand and
dropped whole by retention.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from sqlalchemy import Table, create_engine, event, make_url, text
from sqlalchemy.engine import Connection

from plyra_trace.collector.model import Row, SpanRecord, WriteResult
from plyra_trace.collector.sampling.decide import Decision
from plyra_trace.collector.storage import StorageUnavailable, _sampling, mask_url
from plyra_trace.collector.storage import _tables as t
from plyra_trace.collector.storage._dialect import PG_TRACE_LOCKS
from plyra_trace.collector.storage._migrate import migrate
from plyra_trace.collector.storage._queries import SqlReads, is_connection_error
from plyra_trace.collector.storage._rollups import upsert_sql
from plyra_trace.collector.storage._write import Conflict, KnownResources, write_batch

_log = logging.getLogger(__name__)
DAY_NS: Final = 86_400 * 10**9
CHANNEL: Final = "plyra_writes"
_NOTIFY_IDS: Final = 150
"""Trace ids a NOTIFY names at most (its payload must stay under 8000 bytes)."""
_WORK_MEM: Final = "32MB"
_PARTITION_LOCK: Final = 0x706C7972615F7061
_PARTITIONED: Final = (t.spans, t.span_payloads)
_KEYS: Final = {
    "spans": ("trace_id", "span_id", "start_ns"),
    "span_payloads": ("trace_id", "span_id", "start_ns"),
    "traces": ("trace_id",),
    "handoffs": ("trace_id", "span_id"),
    "guards": ("trace_id", "span_id"),
    "resources": ("resource_id",),
    "trace_sampling": ("trace_id",),
}


def _partition_name(table: Table, day: int) -> str:
    return f"{table.name}_d{datetime.fromtimestamp(day * 86_400, UTC):%Y%m%d}"


def _day_end(day: int) -> str:
    """The partition's exclusive upper bound (MAXVALUE where a bigint would overflow)."""
    end = (day + 1) * DAY_NS
    return str(end) if end < 2**63 else "MAXVALUE"


def _partition_day(name: str) -> int | None:
    _, _, stamp = name.rpartition("_d")
    try:
        return int(datetime.strptime(stamp, "%Y%m%d").replace(tzinfo=UTC).timestamp()) // 86_400
    except ValueError:
        return None


class PostgresStorage(SqlReads):
    """:class:`~plyra_trace.collector.storage.Storage` on a PostgreSQL database."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        parsed = make_url(url)
        self.url = url
        self._conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self.engine = create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_size=pool_size,
            max_overflow=2 * pool_size,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": 5,
                "application_name": "plyra-trace",
                # Group-bys of the cost and graph queries sort in memory, not on disk.
                "options": f"-c work_mem={_WORK_MEM}",
            },
        )
        self._origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._days: set[int] = set()
        self._days_lock = threading.Lock()
        self._resources = KnownResources()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        try:
            with self.engine.begin() as conn:
                migrate(conn)
            self.engine.dispose()  # later connections are made by _connected, with staging
            event.listen(self.engine, "connect", _connected)
        except Exception as error:
            self.engine.dispose()
            if is_connection_error(error):
                reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
                raise StorageUnavailable(
                    f"cannot reach the database at {mask_url(url)}: {reason}"
                ) from None
            raise

    # --- writing ------------------------------------------------------------------------------
    def write(self, spans: Sequence[SpanRecord]) -> WriteResult:
        """Insert spans (COPY), recompute their traces under per-trace locks, commit."""
        if not spans:
            return WriteResult()
        days = {s.start_ns // DAY_NS for s in spans}
        for attempt in (1, 2):
            self._ensure_days(days)
            try:
                with self._transaction() as conn:
                    cursor = _raw(conn).cursor(row_factory=dict_row)
                    result = write_batch(_PgOps(self._resources, cursor), spans, self.sample_new)
                    ids = [trace["trace_id"] for trace in result.traces[:_NOTIFY_IDS]]
                    payload = json.dumps({"o": self._origin, "n": result.spans, "t": ids})
                    cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                self._resources.committed()
                return result
            except psycopg.errors.CheckViolation:
                # A partition this process thought it had was dropped (retention elsewhere).
                if attempt == 2:
                    raise
            finally:
                self._resources.pending.clear()
                with self._days_lock:
                    self._days.clear()
        raise AssertionError("unreachable")

    def apply_decisions(self, decisions: Sequence[Decision]) -> int:
        """Record sampling decisions under the same per-trace locks as writes, so a decision and
        a span of its trace arriving at another replica serialise."""
        if not decisions:
            return 0
        with self._transaction() as conn:
            _PgOps(self._resources, _raw(conn).cursor()).lock(sorted(d.trace_id for d in decisions))
            return _sampling.apply(conn, decisions)

    def _ensure_days(self, days: set[int]) -> None:
        with self._days_lock:
            missing = sorted(days - self._days)
        if not missing:
            return
        with self._transaction() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PARTITION_LOCK})
            for day in missing:
                for table in _PARTITIONED:
                    conn.exec_driver_sql(
                        f"CREATE TABLE IF NOT EXISTS {_partition_name(table, day)}"
                        f" PARTITION OF {table.name}"
                        f" FOR VALUES FROM ({day * DAY_NS}) TO ({_day_end(day)})"
                    )
        with self._days_lock:
            self._days.update(missing)

    # --- retention ----------------------------------------------------------------------------
    def delete_expired(self, cutoff_ns: int, max_traces: int) -> int:
        """Drop one day partition wholly before the cutoff if there is one, else delete up to
        ``max_traces`` expired traces row by row; how many traces (or partitions) went."""
        if self._drop_one_partition(cutoff_ns):
            return 1
        with self._transaction() as conn:
            ids = self._expired_ids(conn, cutoff_ns, max_traces)
            if ids:
                self._delete_traces(conn, ids)
        return len(ids)

    def _drop_one_partition(self, cutoff_ns: int) -> bool:
        """Detach (concurrently: ingest keeps writing) and drop one expired day partition."""
        rows = self._rows(
            text(
                "SELECT c.relname AS name, p.relname AS parent, i.inhdetachpending AS pending"
                " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " JOIN pg_class p ON p.oid = i.inhparent"
                " WHERE p.relname IN ('spans', 'span_payloads') ORDER BY c.relname"
            )
        )
        for row in rows:
            day = _partition_day(row["name"])
            if day is None or (day + 1) * DAY_NS > cutoff_ns:
                continue
            mode = "FINALIZE" if row["pending"] else "CONCURRENTLY"
            with self._guard(), self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                try:
                    conn.exec_driver_sql(
                        f'ALTER TABLE {row["parent"]} DETACH PARTITION "{row["name"]}" {mode}'
                    )
                except Exception as error:
                    if is_connection_error(error):
                        raise
                    _log.info("partition %s: %s (another replica?)", row["name"], error)
                    return False
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{row["name"]}"')
            with self._days_lock:
                self._days.discard(day)
            return True
        return False

    # --- replicas -----------------------------------------------------------------------------
    def watch(self, on_write: Callable[[WriteResult], None]) -> None:
        """LISTEN for other replicas' commits and hand each to ``on_write`` with its summaries."""
        if self._watcher is not None:
            return
        self._watcher = threading.Thread(
            target=self._listen, args=(on_write,), name="plyra-pg-listen", daemon=True
        )
        self._watcher.start()

    def _listen(self, on_write: Callable[[WriteResult], None]) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._announce(note.payload, on_write)
            except Exception:
                _log.debug("live-stream listener lost its connection; reconnecting", exc_info=True)
                self._stop.wait(1.0)

    def _announce(self, payload: str, on_write: Callable[[WriteResult], None]) -> None:
        try:
            message = json.loads(payload)
            if message.get("o") == self._origin:
                return
            traces = self.trace_summaries([str(i) for i in message.get("t", ())])
            on_write(WriteResult(spans=int(message.get("n", 0)), traces=traces))
        except Exception:
            _log.exception("could not announce another replica's write")

    def close(self) -> None:
        """Stop listening and release every pooled connection."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(2.0)
        self.engine.dispose()


def _connected(dbapi: psycopg.Connection[Any], _record: Any) -> None:
    """Give a new connection its staging tables: rows that may already exist are COPYed there,
    then merged with ``INSERT ... ON CONFLICT`` (temporary, emptied at each commit)."""
    for table in _KEYS:
        dbapi.execute(
            sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DELETE ROWS").format(
                sql.Identifier(f"_stage_{table}"), sql.Identifier(table)
            )
        )
    dbapi.commit()


def _raw(conn: Connection) -> psycopg.Connection[Any]:
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def _scrub(rows: Sequence[Sequence[Any]]) -> Iterator[Sequence[Any]]:
    """PostgreSQL text and JSONB hold no NUL character: replace it (SQLite keeps it)."""
    for row in rows:
        if any(type(v) is str and "\x00" in v for v in row):
            yield [
                v.replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd") if type(v) is str else v
                for v in row
            ]
        else:
            yield row


class _PgOps:
    """:class:`~plyra_trace.collector.storage._write.WriteOps` on a psycopg cursor (COPY)."""

    def __init__(self, known: KnownResources, cursor: psycopg.Cursor[Row]) -> None:
        self._cursor = cursor
        self.new_resource = known.new_resource

    def lock(self, trace_ids: Sequence[str]) -> None:
        self._cursor.execute(PG_TRACE_LOCKS, (list(trace_ids),))

    def select(self, table: Table, columns: Sequence[str], trace_ids: Sequence[str]) -> list[Row]:
        self._cursor.execute(
            sql.SQL("SELECT {} FROM {} WHERE trace_id = ANY(%s)").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table.name)
            ),
            (list(trace_ids),),
        )
        return self._cursor.fetchall()

    def delete(self, table: Table, trace_ids: Sequence[str]) -> None:
        self._cursor.execute(
            sql.SQL("DELETE FROM {} WHERE trace_id = ANY(%s)").format(sql.Identifier(table.name)),
            (list(trace_ids),),
        )

    def put(self, table: Table, rows: Sequence[Sequence[Any]], conflict: Conflict) -> None:
        if not rows:
            return
        names = [c.name for c in table.columns]
        columns = sql.SQL(", ").join(map(sql.Identifier, names))
        target = sql.Identifier(table.name)
        if conflict != "none":
            target = sql.Identifier(f"_stage_{table.name}")
        with self._cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(target, columns)) as copy:
            for row in _scrub(rows):
                copy.write_row(row)
        if conflict == "none":
            return
        keys = _KEYS[table.name]
        action: sql.Composable
        if conflict == "ignore":
            action = sql.SQL("DO NOTHING")
        else:
            action = sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
                    for n in names
                    if n not in keys
                )
            )
        self._cursor.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                sql.Identifier(table.name),
                columns,
                columns,
                target,
                sql.SQL(", ").join(map(sql.Identifier, keys)),
                action,
            )
        )

    def set_agents(self, updates: Sequence[tuple[str | None, str, str, int]]) -> None:
        agents, trace_ids, span_ids, starts = (list(c) for c in zip(*updates, strict=True))
        self._cursor.execute(
            "UPDATE spans AS s SET agent = u.agent FROM unnest(%s::text[], %s::text[],"
            " %s::text[], %s::bigint[]) AS u(agent, trace_id, span_id, start_ns)"
            " WHERE s.trace_id = u.trace_id AND s.span_id = u.span_id AND s.start_ns = u.start_ns",
            (agents, trace_ids, span_ids, starts),
        )

    def add(self, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(upsert_sql(table, "%s"), rows)


__all__ = ["CHANNEL", "DAY_NS", "PostgresStorage"]
