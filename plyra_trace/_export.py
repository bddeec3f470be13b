"""Where spans go: OTLP over HTTP or gRPC, the console tree, or an exporter the caller brings.

Also keeps the OpenTelemetry exporters' own complaints to one line each: a dead endpoint or a
full queue is said once, with a hint, and counted after that.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.util.re import parse_env_headers

HTTP_PROTOBUF: Final = "http/protobuf"
GRPC: Final = "grpc"
_TRACES_PATH: Final = "/v1/traces"

_SESSION_PROVIDER: Final = "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER"
_QUEUE_LOGGER: Final = "opentelemetry.sdk._shared_internal"
_EXPORT_LOGGERS: Final = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
)


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def resolve_protocol(protocol: str | None) -> str:
    """The OTLP protocol: argument, else OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL, else http."""
    chosen = (
        protocol
        or _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        or HTTP_PROTOBUF
    )
    chosen = chosen.strip().lower()
    if chosen in ("http", "http/protobuf", "protobuf"):
        return HTTP_PROTOBUF
    if chosen == GRPC:
        return GRPC
    raise ValueError(f"unsupported OTLP protocol {chosen!r}; use 'http/protobuf' or 'grpc'")


def traces_url(endpoint: str) -> str:
    """A base URL or a full ``.../v1/traces`` URL, as the URL to POST spans to."""
    endpoint = endpoint.strip()
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"endpoint must be an http(s) URL such as http://localhost:4318, not {endpoint!r}"
        )
    path = parts.path.rstrip("/")
    if path.endswith(_TRACES_PATH):
        return endpoint
    return f"{parts.scheme}://{parts.netloc}{path}{_TRACES_PATH}"


def resolve_endpoint(endpoint: str | None, protocol: str) -> str | None:
    """Argument first, then the standard OTLP variables; None means no OTLP export."""
    if endpoint:
        return traces_url(endpoint) if protocol == HTTP_PROTOBUF else endpoint
    signal = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if signal:
        return signal
    base = _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return traces_url(base) if protocol == HTTP_PROTOBUF else base
    return None


def resolve_headers(headers: Mapping[str, str] | None, api_key: str | None) -> dict[str, str]:
    """Headers for the backend: argument (else OTEL_EXPORTER_OTLP_[TRACES_]HEADERS) plus api key."""
    if headers is not None:
        resolved = {str(k): str(v) for k, v in headers.items()}
    else:
        raw = _env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") or ""
        resolved = dict(parse_env_headers(raw, liberal=True))
    key = api_key or _env("PLYRA_API_KEY")
    if key and not any(name.lower() == "authorization" for name in resolved):
        resolved["authorization"] = f"Bearer {key}"
    return resolved


def otlp_exporter(
    endpoint: str, protocol: str, headers: dict[str, str], timeout: float | None
) -> SpanExporter:
    """The OpenTelemetry OTLP exporter for ``protocol``."""
    if protocol == GRPC:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError as missing:
            raise ImportError(
                "protocol='grpc' needs the grpc extra: pip install 'plyra-trace[grpc]'"
            ) from missing
        insecure = urlsplit(endpoint).scheme == "http"
        return GrpcExporter(
            endpoint=endpoint, headers=headers or None, timeout=timeout, insecure=insecure
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if os.environ.get(_SESSION_PROVIDER):  # the user brings the session
        return OTLPSpanExporter(endpoint=endpoint, headers=headers or None, timeout=timeout)
    session = _fork_safe_session()
    return OTLPSpanExporter(
        endpoint=endpoint, headers=headers or None, timeout=timeout, session=session
    )


def _fork_safe_session() -> Any:
    """A requests session whose pooled connections a forked child (Celery, gunicorn workers)
    drops, so it never writes into the parent's keep-alive socket."""
    import requests

    session = requests.Session()
    if hasattr(os, "register_at_fork"):
        reference = weakref.ref(session)

        def forget() -> None:
            inherited = reference()
            if inherited is not None:
                try:
                    inherited.close()  # pools emptied; the session stays usable
                except Exception:
                    pass

        os.register_at_fork(after_in_child=forget)
    return session


def exporting_processor(
    exporter: SpanExporter, batch: bool, max_queue_size: int, schedule_delay_millis: int
) -> SpanProcessor:
    """A bounded batch processor (never blocks the caller) or, with ``batch=False``, a
    synchronous one for scripts and serverless functions."""
    if not batch:
        return SimpleSpanProcessor(exporter)
    return BatchSpanProcessor(
        exporter,
        max_queue_size=max_queue_size,
        max_export_batch_size=min(512, max_queue_size),
        schedule_delay_millis=schedule_delay_millis,
    )


@dataclass
class ExportHealth:
    """How many spans the queue dropped and how many export attempts failed, since ``init()``."""

    dropped_spans: int = 0
    failed_exports: int = 0


class _SayOnce(logging.Filter):
    """Lets the first matching record through, rewritten with a hint; counts and drops the rest."""

    def __init__(self, health: ExportHealth, hint: str, counter: str, match: str = "") -> None:
        super().__init__("plyra")
        self._match = match
        self._health = health
        self._hint = hint
        self._counter = counter
        self._said = False
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not str(record.msg).startswith(self._match):
            return True
        with self._lock:
            setattr(self._health, self._counter, getattr(self._health, self._counter) + 1)
            if self._said:
                return False
            self._said = True
        record.msg = (
            f"{record.getMessage()} ({self._hint}; further occurrences are counted, not logged)"
        )
        record.args = ()
        return True


class ExportLogGuard:
    """Installs and removes the say-once filters on the OpenTelemetry export loggers."""

    def __init__(self, health: ExportHealth, endpoint: str | None, max_queue_size: int) -> None:
        self._installed: list[tuple[logging.Logger, logging.Filter]] = []
        queue_hint = (
            f"plyra_trace: export queue full at {max_queue_size} spans, spans are dropped; "
            "raise max_queue_size or check the exporter"
        )
        export_hint = f"plyra_trace: cannot export to {endpoint}; is the collector running?"
        self._add(_QUEUE_LOGGER, _SayOnce(health, queue_hint, "dropped_spans", "Queue full"))
        for name in _EXPORT_LOGGERS:
            self._add(name, _SayOnce(health, export_hint, "failed_exports"))

    def _add(self, name: str, log_filter: logging.Filter) -> None:
        logger = logging.getLogger(name)
        logger.addFilter(log_filter)
        self._installed.append((logger, log_filter))

    def remove(self) -> None:
        for logger, log_filter in self._installed:
            logger.removeFilter(log_filter)
        self._installed.clear()
