"""Settings of one collector process, with limits that keep bad input from hurting it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from plyra_trace.collector.sampling.policy import SamplingPolicy

DEFAULT_PORT: Final = 4318
DEFAULT_DB: Final = "plyra-trace.db"


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
    """Refuse OTLP and API requests without a valid API key (always on for non-loopback binds)."""
    writer_max_batch_spans: int = 20_000
    """Spans the writer commits together in one transaction, at most."""
    retention_days: float | None = None
    """Delete traces whose root started longer ago than this (None: keep everything)."""
    sampling: SamplingPolicy = field(default_factory=SamplingPolicy)
    """Tail sampling (off by default: every trace keeps its spans; ``docs/sampling.md``)."""
