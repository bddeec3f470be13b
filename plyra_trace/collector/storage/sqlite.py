"""Embedded SQLite storage (WAL): the shared query layer plus a raw ``executemany`` write path.

One writer connection (``BEGIN IMMEDIATE`` per batch); readers come from the engine's pool, each
statement reading a consistent WAL snapshot. The bulk insert bypasses SQLAlchemy's per-row
parameter handling: ingest speed is the sqlite3 module's.

The WAL stays bounded under constant readers: SQLite's own checkpoints (PASSIVE, after commits)
cannot restart a log that some reader is always inside, so once the ``-wal`` file passes
``wal_limit_bytes`` the writer runs a TRUNCATE checkpoint after its commit, waiting at most
``_CHECKPOINT_WAIT_MS`` for readers of older snapshots (new readers read the database file once
it is backfilled); if they are still there, it tries again after a later commit.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from sqlalchemy import URL, Table, create_engine, event
from sqlalchemy.engine import Connection, Engine

from plyra_trace.collector.model import Row, SpanRecord, WriteResult
from plyra_trace.collector.sampling.decide import Decision
from plyra_trace.collector.storage import _sampling
from plyra_trace.collector.storage._migrate import migrate
from plyra_trace.collector.storage._queries import SqlReads
from plyra_trace.collector.storage._rollups import upsert_sql
from plyra_trace.collector.storage._write import Conflict, KnownResources, write_batch

_INSERT: Final = {
    "replace": "INSERT OR REPLACE",
    "ignore": "INSERT OR IGNORE",
    "none": "INSERT OR REPLACE",  # costs nothing without a conflict, and is safe if one occurs
}
_IN_IDS: Final = "trace_id IN (SELECT value FROM json_each(?))"
_BUSY_MS: Final = 30_000
_CHECKPOINT_WAIT_MS: Final = 200
"""How long a truncating checkpoint waits for readers (the writer lock is held meanwhile)."""
WAL_LIMIT_BYTES: Final = 64 * 1024 * 1024
"""Default WAL size past which the writer truncates it (well under the 256 MB bound)."""
_log = logging.getLogger(__name__)


def _engine(path: str, synchronous: str) -> Engine:
    engine = create_engine(
        URL.create("sqlite", database=path),
        pool_size=8,
        max_overflow=32,
        connect_args={"check_same_thread": False, "timeout": 30.0},
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi: sqlite3.Connection, _record: Any) -> None:
        # Transactions are begun explicitly below (the sqlite3 module's own handling would not
        # cover DDL); WAL lets readers run beside the writer.
        dbapi.isolation_level = None
        dbapi.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        dbapi.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode survives a process crash (kill -9); FULL also survives power loss.
        dbapi.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'FULL' else 'NORMAL'}")
        # Debian's SQLite zeroes deleted content by default, which doubles the pages a delete
        # writes (sampled-out spans); FAST zeroes only where that costs no extra I/O.
        dbapi.execute("PRAGMA secure_delete = FAST")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # The writer's transactions take the write lock up front; everything else (reads, and
        # one-statement key changes) runs in autocommit: each statement is atomic on its own.
        if conn.get_execution_options().get("sqlite_immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class SQLiteStorage(SqlReads):
    """:class:`~plyra_trace.collector.storage.Storage` on one SQLite file in WAL mode."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        wal_limit_bytes: int = WAL_LIMIT_BYTES,
    ) -> None:
        self.path = path
        self.wal_limit_bytes = wal_limit_bytes
        self.checkpoints = [0, 0]
        """Truncating checkpoints run and how many of them found readers in the way."""
        self.engine = _engine(path, synchronous)
        self._write_lock = threading.Lock()
        self._resources = KnownResources()
        self._writer = self.engine.connect().execution_options(sqlite_immediate=True)
        with self._writer.begin():
            migrate(self._writer)

    def write(self, spans: Sequence[SpanRecord]) -> WriteResult:
        """Insert spans, recompute their traces and handoffs, commit; all or nothing."""
        if not spans:
            return WriteResult()
        with self._write_lock:
            try:
                with self._guard(), self._writer.begin():
                    result = write_batch(
                        _SQLiteOps(self._resources, self._raw().cursor()), spans, self.sample_new
                    )
                self._resources.committed()
            finally:
                self._resources.pending.clear()
            with self._guard():
                self._bound_wal()
            return result

    def apply_decisions(self, decisions: Sequence[Decision]) -> int:
        """Record sampling decisions (dropping sampled-out spans) in one write transaction."""
        if not decisions:
            return 0
        with self._write_lock, self._guard():
            with self._writer.begin():
                applied = _sampling.apply(self._writer, decisions)
            self._bound_wal()
            return applied

    def _raw(self) -> sqlite3.Connection:
        raw = self._writer.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        return raw

    def wal_bytes(self) -> int:
        """Current size of the ``-wal`` file (0 when there is none)."""
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def _bound_wal(self) -> None:
        """After a commit, under the write lock: truncate the WAL once it passes the limit."""
        if self.wal_bytes() <= self.wal_limit_bytes:
            return
        raw = self._raw()
        raw.execute(f"PRAGMA busy_timeout = {_CHECKPOINT_WAIT_MS}")
        try:
            busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError:
            busy = 1
        finally:
            raw.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        self.checkpoints[0] += 1
        if busy:
            self.checkpoints[1] += 1
            _log.debug("WAL checkpoint found readers in the way; retrying after a later commit")

    def delete_expired(self, cutoff_ns: int, max_traces: int) -> int:
        """Delete up to ``max_traces`` traces started before ``cutoff_ns``, in one transaction."""
        with self._write_lock, self._guard(), self._writer.begin():
            ids = self._expired_ids(self._writer, cutoff_ns, max_traces)
            if ids:
                self._delete_traces(self._writer, ids)
        with self._write_lock, self._guard():
            self._bound_wal()
        return len(ids)

    def watch(self, on_write: Callable[[WriteResult], None]) -> None:
        """Nothing to watch: one process owns a SQLite file, so every write is announced locally."""

    def close(self) -> None:
        """Close the writer and every pooled reader connection."""
        with self._write_lock:
            self._writer.close()
        self.engine.dispose()


class _SQLiteOps:
    """:class:`~plyra_trace.collector.storage._write.WriteOps` on a raw sqlite3 cursor."""

    def __init__(self, known: KnownResources, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor
        self.new_resource = known.new_resource

    def lock(self, trace_ids: Sequence[str]) -> None:
        """``BEGIN IMMEDIATE`` already holds the database's one write lock."""

    def select(self, table: Table, columns: Sequence[str], trace_ids: Sequence[str]) -> list[Row]:
        cursor = self._cursor.execute(
            f"SELECT {', '.join(columns)} FROM {table.name} WHERE {_IN_IDS}",
            (json.dumps(list(trace_ids)),),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def delete(self, table: Table, trace_ids: Sequence[str]) -> None:
        self._cursor.execute(
            f"DELETE FROM {table.name} WHERE {_IN_IDS}", (json.dumps(list(trace_ids)),)
        )

    def put(self, table: Table, rows: Sequence[Sequence[Any]], conflict: Conflict) -> None:
        if rows:
            names = [c.name for c in table.columns]
            self._cursor.executemany(
                f"{_INSERT[conflict]} INTO {table.name} ({', '.join(names)})"
                f" VALUES ({', '.join('?' * len(names))})",
                rows,
            )

    def set_agents(self, updates: Sequence[tuple[str | None, str, str, int]]) -> None:
        self._cursor.executemany(
            "UPDATE spans SET agent = ? WHERE trace_id = ? AND span_id = ?",
            [u[:3] for u in updates],
        )

    def add(self, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(upsert_sql(table, "?"), rows)


__all__ = ["SQLiteStorage"]
