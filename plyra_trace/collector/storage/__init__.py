"""The storage interface: everything the collector keeps and asks, with no engine's SQL above it.

:class:`Storage` is the whole contract between ingest/API and a backend. SQLite (embedded,
WAL) is the default; a ClickHouse backend for larger deployments implements the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from plyra_trace.collector.model import (
    CostDimension,
    Page,
    Row,
    SpanRecord,
    TraceFilter,
    WriteResult,
)


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
        """Sessions (traces sharing a session id) with counts, cost and time span; newest first."""
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

    def count_spans(self) -> int:
        """How many spans are stored."""
        ...

    def close(self) -> None:
        """Release connections; the data stays."""
        ...


def open_storage(url: str) -> Storage:
    """The backend for a ``--db`` value: a SQLite file path (the only backend so far)."""
    from plyra_trace.collector.storage.sqlite import SQLiteStorage

    return SQLiteStorage(url)


__all__ = ["Storage", "open_storage"]
