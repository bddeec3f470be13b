"""Schema versions and the ordered steps that upgrade a store in place, losing nothing.

A fresh store gets every table at the latest version. An older store runs each later step in
order, inside one transaction (both engines have transactional DDL), then records the version
in ``plyra_meta`` (SQLite also in ``PRAGMA user_version``, which 0.3.0 set to 1). Replicas starting
together on PostgreSQL take an advisory lock first, so exactly one of them migrates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sqlalchemy import Connection, inspect, select, text, update
from sqlalchemy.schema import CreateIndex

from plyra_trace.collector.storage import _rollups
from plyra_trace.collector.storage import _tables as t

_MIGRATION_LOCK: Final = 0x706C7972615F6D69  # an arbitrary advisory-lock id ("plyra_mi")


def _v2(conn: Connection) -> None:
    """0.3.0 -> 0.4: payload rows carry their span's start (PostgreSQL partitions them by day),
    a project index for the list's filter, and the metadata table."""
    conn.execute(text("ALTER TABLE span_payloads ADD COLUMN start_ns BIGINT"))
    s, p = t.spans.c, t.span_payloads.c
    start = select(s.start_ns).where(s.trace_id == p.trace_id, s.span_id == p.span_id)
    conn.execute(update(t.span_payloads).values(start_ns=start.scalar_subquery()))
    project = next(i for i in t.traces.indexes if i.name == "traces_project")
    conn.execute(CreateIndex(project, if_not_exists=True))
    t.plyra_meta.create(conn, checkfirst=True)


def _v3(conn: Connection) -> None:
    """The guard decisions table (the Guards view); decisions stored from here on."""
    t.guards.create(conn, checkfirst=True)


def _v4(conn: Connection) -> None:
    """Tail sampling: per-trace sampling state and the decision counts."""
    for table in (t.trace_sampling, t.sampling_stats):
        table.create(conn, checkfirst=True)


def _v5(conn: Connection) -> None:
    """Live spans: the table of spans still running."""
    t.live_spans.create(conn, checkfirst=True)


def _v6(conn: Connection) -> None:
    """Hourly roll-ups (per dimension value and per handoff edge), built from the stored
    traces."""
    for table in t.ROLLUP_TABLES:
        table.create(conn, checkfirst=True)
    _rollups.backfill(conn)


STEPS: Final[tuple[tuple[int, Callable[[Connection], None]], ...]] = (
    (2, _v2),
    (3, _v3),
    (4, _v4),
    (5, _v5),
    (6, _v6),
)
"""(version reached, step) in order; version 1 is the 0.3.0 layout."""
LATEST: Final = STEPS[-1][0]


class SchemaTooNew(RuntimeError):
    """The store was written by a newer plyra-trace; this one must not touch it."""


def current_version(conn: Connection) -> int:
    """The schema version a store is at: 0 for an empty store."""
    tables = set(inspect(conn).get_table_names())
    if "plyra_meta" in tables:
        value = conn.execute(
            select(t.plyra_meta.c.value).where(t.plyra_meta.c.key == "schema_version")
        ).scalar()
        return int(value or 0)
    if "traces" in tables and conn.dialect.name == "sqlite":
        return int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 1)
    return 0


def migrate(conn: Connection) -> tuple[int, int]:
    """Bring the store to :data:`LATEST` inside the caller's transaction; (from, to) versions."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK})
    found = current_version(conn)
    if found > LATEST:
        raise SchemaTooNew(
            f"the database is at schema version {found}; this plyra-trace knows up to {LATEST}:"
            " upgrade plyra-trace"
        )
    if found == LATEST:
        return found, found
    if found == 0:
        t.metadata.create_all(conn)
    else:
        for version, step in STEPS:
            if version > found:
                step(conn)
    _stamp(conn, LATEST)
    return found, LATEST


def _stamp(conn: Connection, version: int) -> None:
    meta = t.plyra_meta
    conn.execute(meta.delete().where(meta.c.key == "schema_version"))
    conn.execute(meta.insert().values(key="schema_version", value=str(version)))
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA user_version = {int(version)}")


__all__ = ["LATEST", "STEPS", "SchemaTooNew", "current_version", "migrate"]
