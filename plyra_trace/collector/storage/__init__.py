"""The storage interface: everything the collector keeps and asks, with no engine's SQL above it.

:class:`Storage` is the whole contract between ingest/API and a backend. Two stores implement it
over one query layer (``_queries``, SQLAlchemy Core): SQLite (embedded, WAL; the default) and
PostgreSQL (any number of collector replicas on one database). :func:`open_storage` picks one
from a ``--db`` value: a file path or a ``postgresql://`` URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol

from plyra_trace.collector.model import (
    CostDimension,
    GuardFilter,
    Page,
    Row,
    SpanRecord,
    TraceFilter,
    WriteResult,
)
from plyra_trace.collector.sampling.decide import Decision, TraceFacts


class Storage(Protocol):
    """Durable span storage with trace summaries, handoff edges and roll-ups kept correct on write.

    ``write`` is called by one writer thread only; every other method may be called from any thread.
    """

    def write(self, spans: Sequence[SpanRecord]) -> WriteResult:
        """Store spans in one transaction and refresh the summaries and edges of their traces.

        Returns only after the data is committed (durable against a process crash).
        """
        ...

    def list_traces(self, where: TraceFilter, cursor: str | None, limit: int) -> Page:
        """Trace summaries matching ``where``, newest first, one page after ``cursor``."""
        ...

    def get_trace(self, trace_id: str) -> Row | None:
        """A trace's summary and ``spans`` (hot columns and attributes), or None if unknown."""
        ...

    def get_span(self, trace_id: str, span_id: str) -> Row | None:
        """One span with everything: attributes, events, resource, full input and output."""
        ...

    def trace_spans(self, trace_ids: Sequence[str]) -> list[Row]:
        """Hot columns of every span of the given traces (flamegraph input)."""
        ...

    def find_trace_ids(
        self,
        *,
        root_name: str | None,
        agent: str | None,
        since_ns: int | None,
        until_ns: int | None,
        limit: int,
    ) -> list[str]:
        """Newest traces whose root is named ``root_name`` and/or which contain ``agent``."""
        ...

    def guards(self, where: GuardFilter, limit: int) -> Row:
        """Guard decisions per (policy, action) with count, agents, providers, p95 latency and
        recent trace ids (``items``); counts per time bucket (``series``, ``bucket_ns``, over
        ``since_ns``..``until_ns``); and the
        agents with the most blocks (``blocked_agents``)."""
        ...

    def session_guards(self, session_id: str, limit: int) -> list[Row]:
        """A session's guard decisions across its traces and services, in time order."""
        ...

    def agents_graph(self, since_ns: int | None, until_ns: int | None) -> Row:
        """``nodes`` (agents with spans, errors, cost) and ``edges`` (handoffs) in a time window."""
        ...

    def cost_breakdown(
        self, by: CostDimension, since_ns: int | None, until_ns: int | None, limit: int
    ) -> list[Row]:
        """Cost and tokens grouped by one dimension, most expensive first, unpriced apart."""
        ...

    def list_sessions(
        self, since_ns: int | None, until_ns: int | None, cursor: str | None, limit: int
    ) -> Page:
        """Sessions (traces sharing a session id) with counts, cost, time span and ``users`` (the
        distinct users; ``user_id`` is the smallest, as in 0.3.0); newest first."""
        ...

    def facets(self, since_ns: int | None, until_ns: int | None) -> Row:
        """Distinct projects, services, agents and models seen in a window (filter choices)."""
        ...

    def add_key(self, key_id: str, name: str, secret_hash: str, created_ns: int) -> None:
        """Store a new API key (only its hash)."""
        ...

    def list_keys(self) -> list[Row]:
        """Every API key: id, name, created and revoked times (never the hash)."""
        ...

    def revoke_key(self, key_id: str, revoked_ns: int) -> bool:
        """Revoke an active key; False if there is no such active key."""
        ...

    def key_hash(self, key_id: str) -> str | None:
        """The stored hash of an active key, or None."""
        ...

    def delete_expired(self, cutoff_ns: int, max_traces: int) -> int:
        """One short retention step: delete up to ``max_traces`` traces started before
        ``cutoff_ns`` (PostgreSQL also drops day partitions wholly before it); how many went."""
        ...

    def watch(self, on_write: Callable[[WriteResult], None]) -> None:
        """Call ``on_write`` (on a background thread) for writes other processes committed to
        this store, so every replica's live stream shows every replica's spans."""
        ...

    # --- tail sampling (plyra_trace.collector.sampling decides; the store only keeps state) ---
    def enable_sampling(self) -> None:
        """From now on, traces seen for the first time wait for a sampling decision."""
        ...

    def pending_decisions(self, now_ns: int, wait_ns: int, limit: int) -> list[TraceFacts]:
        """Undecided traces whose last span was stored at least ``wait_ns`` before ``now_ns``,
        oldest first, with the facts the decision reads."""
        ...

    def sticky_sessions(self, session_ids: Sequence[str]) -> set[str]:
        """Those of ``session_ids`` that hold a trace kept for a problem."""
        ...

    def apply_decisions(self, decisions: Sequence[Decision]) -> int:
        """Record decisions in one transaction; a dropped trace loses its span rows and payloads
        (keeping summary, usage, handoffs and a skeleton). A decision whose trace received a span
        since ``seen_ns`` (or was decided elsewhere) is skipped. Returns how many were applied."""
        ...

    def sampling_stats(self) -> Row:
        """Counts of kept, dropped and pending traces, spans dropped and bytes freed (estimate)."""
        ...

    def count_spans(self) -> int:
        """How many spans are stored."""
        ...

    def close(self) -> None:
        """Release connections; the data stays."""
        ...


class StorageUnavailable(RuntimeError):
    """The database cannot be reached right now (ingest and API answer 503 and recover later)."""


class StorageURLError(ValueError):
    """A ``--db`` value names no store this collector can open."""


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def is_postgres(url: str) -> bool:
    """True for a PostgreSQL URL (``postgresql://``, ``postgres://``)."""
    found = _SCHEME.match(url)
    return bool(found and found.group(1).lower() in _POSTGRES_SCHEMES)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    return re.sub(r"^([^:/]+://[^:/@]*):[^@/]*@", r"\1:***@", url)


def open_storage(url: str) -> Storage:
    """The store for a ``--db`` value: a SQLite file path or a ``postgresql://`` URL.

    Raises :class:`StorageURLError` for other schemes and :class:`StorageUnavailable` when the
    database cannot be reached.
    """
    found = _SCHEME.match(url)
    if found and not is_postgres(url):
        scheme = found.group(1)
        if scheme.lower() != "sqlite":
            raise StorageURLError(
                f"unsupported database URL scheme {scheme!r}: use a SQLite file path"
                " or postgresql://user:password@host:port/dbname"
            )
        url = url[len(found.group(0)) :]
    if is_postgres(url):
        try:
            from plyra_trace.collector.storage.postgres import PostgresStorage
        except ImportError as error:
            raise StorageURLError(
                f"PostgreSQL needs: pip install 'plyra-trace[postgres]' ({error})"
            ) from None
        return PostgresStorage(url)
    from plyra_trace.collector.storage.sqlite import SQLiteStorage

    return SQLiteStorage(url)


__all__ = [
    "Storage",
    "StorageURLError",
    "StorageUnavailable",
    "is_postgres",
    "mask_url",
    "open_storage",
]
