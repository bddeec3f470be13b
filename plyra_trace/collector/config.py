"""Settings of one collector process, with limits that keep bad input from hurting it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from plyra_trace.collector.sampling.policy import SamplingPolicy

DEFAULT_PORT: Final = 4318
DEFAULT_DB: Final = "plyra-trace.db"
DEFAULT_MAX_INFLIGHT_MB: Final = 64


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Where the collector listens and stores, and how much one request may carry."""

    db_path: str = DEFAULT_DB
    """A SQLite file path or a ``postgresql://`` URL."""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    grpc_port: int | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request body accepted, after gzip inflation too (413 beyond it)."""
    max_spans_per_request: int = 50_000
    """Spans beyond this in one request are rejected through OTLP partial success."""
    max_attribute_chars: int = 16_384
    """Longest string kept for an ordinary attribute value (longer ones are truncated)."""
    max_io_chars: int = 1_048_576
    """Longest input/output value kept (stored apart from the hot span rows)."""
    max_attributes: int = 256
    """Attributes kept per span; the rest are dropped."""
    require_keys: bool = False
    """Refuse OTLP and API requests without a valid API key even before any key exists
    (non-loopback binds without ``--open``); once an active key exists keys are always required."""
    open_access: bool = False
    """``--open``: a non-loopback bind that does not demand keys (the Host check then applies)."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names answered besides loopback ones where the Host check applies."""
    writer_max_batch_spans: int = 20_000
    """Spans the writer commits together in one transaction, at most."""
    retention_days: float | None = None
    """Delete traces whose root started longer ago than this (None: keep everything)."""
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_MB * 1024 * 1024
    """Request bodies received but not yet committed, at most; past it ingest answers 503 +
    Retry-After (gRPC: UNAVAILABLE + RetryInfo)."""
    retry_after_seconds: int = 1
    """What a throttled sender is told to wait before retrying."""
    sampling: SamplingPolicy = field(default_factory=SamplingPolicy)
    """Tail sampling (off by default: every trace keeps its spans; ``docs/sampling.md``)."""
