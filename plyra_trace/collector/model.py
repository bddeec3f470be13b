"""The one span model every OTLP dialect is normalised into, and the query types over it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Row = dict[str, Any]
"""One JSON-ready record returned by storage (a trace summary, a span, an edge...)."""

Weight = Literal["duration", "cost", "tokens"]
CostDimension = Literal["model", "agent", "session", "user", "service", "project", "day", "trace"]

STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2


@dataclass(slots=True)
class SpanRecord:
    """A span after normalisation: the columns every query reads, plus cold attributes and I/O."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    otel_kind: str
    kind: str
    service: str
    project: str
    start_ns: int
    end_ns: int
    status: int = STATUS_UNSET
    status_message: str = ""
    agent: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None
    cost_source: str | None = None
    handoff_from: str | None = None
    handoff_to: str | None = None
    handoff_protocol: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    input_value: str | None = None
    input_mime: str | None = None
    output_value: str | None = None
    output_mime: str | None = None
    agent_effective: str | None = None
    """The agent the span runs under (its own, else its nearest ancestor's), once derived."""
    running: bool = False
    """A live record of a span still open (``/v1/live``): stored apart until the span ends."""
    heartbeat_ns: int = 0
    """For a live record: the interval its sender re-announces it at (0 if unknown)."""

    @property
    def duration_ns(self) -> int:
        """Wall time of the span (never negative, whatever the sender's clock did)."""
        return max(0, self.end_ns - self.start_ns)


@dataclass(slots=True)
class WriteResult:
    """What one committed write changed: the traces and handoff edges the live stream announces."""

    spans: int = 0
    traces: list[Row] = field(default_factory=list)
    edges: list[Row] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """Filters of the trace list; every field is optional and they combine with AND."""

    project: str | None = None
    service: str | None = None
    agent: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    status: Literal["ok", "error"] | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    min_duration_ns: int | None = None
    min_cost: float | None = None
    text: str | None = None
    guard_policy: str | None = None
    guard_action: str | None = None
    running: bool | None = None
    """True: traces with spans still running; False: traces with none."""
    abandoned: bool | None = None
    """True: traces with spans whose process stopped sending heartbeats."""


@dataclass(frozen=True, slots=True)
class GuardFilter:
    """Which guard decisions the Guards view aggregates (None means any)."""

    project: str | None = None
    agent: str | None = None
    provider: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list plus the opaque cursor for the next page (None at the end)."""

    items: list[Row]
    next_cursor: str | None
