"""A real collector (uvicorn on 127.0.0.1, free port) on either store, and helpers to send it OTLP.

The ``collector`` fixture runs every test that uses it on SQLite (a temp file) and on PostgreSQL
(a fresh database on a private cluster started once per session)."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from plyra_trace.collector.app import create_app
from plyra_trace.collector.config import CollectorConfig
from tests.postgres_server import PostgresServer

STORES = ("sqlite", "postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Collector:
    """A running collector: ``url`` for OTLP, ``api`` (httpx client) for /api/v1."""

    url: str
    db: str
    """The ``--db`` value: a SQLite file path or a PostgreSQL URL."""
    config: CollectorConfig
    api: httpx.Client
    grpc_port: int | None = None
    _server: Any = field(default=None, repr=False)

    def get(self, path: str, **params: Any) -> Any:
        response = self.api.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def post_request(self, request: ExportTraceServiceRequest, gzipped: bool = False) -> Any:
        body = request.SerializeToString()
        headers = {"content-type": "application/x-protobuf"}
        if gzipped:
            body = gzip.compress(body)
            headers["content-encoding"] = "gzip"
        response = self.api.post("/v1/traces", content=body, headers=headers)
        assert response.status_code == 200, response.text
        reply = ExportTraceServiceResponse()
        reply.ParseFromString(response.content)
        return reply

    def send(self, *spans: Span, service: str = "svc", **resource: Any) -> Any:
        return self.post_request(make_request(spans, service=service, **resource))

    def trace(self, trace_id: str) -> Any:
        return self.get(f"/api/v1/traces/{trace_id}")

    def wait(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the collector")
            time.sleep(0.02)


def sse_events(url: str, timeout: float = 20) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs of a live stream (``ready`` first), parsed from the wire."""
    with httpx.stream("GET", f"{url}/api/v1/stream", timeout=timeout) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                yield kind, json.loads(line[6:])


def _value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def attributes(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in values.items()]


_BASE_NS = 1_700_000_000_000_000_000


def make_span(
    trace: int,
    span: int,
    name: str,
    parent: int | None = None,
    *,
    start_ms: float = 0,
    duration_ms: float = 10,
    error: bool = False,
    base_ns: int = _BASE_NS,
    **attrs: Any,
) -> Span:
    """A protobuf span with small integer ids (trace ``t`` -> 16 bytes, span ``s`` -> 8 bytes)."""
    start = base_ns + int(start_ms * 1e6)
    return Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent is not None else b"",
        name=name,
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start,
        end_time_unix_nano=start + int(duration_ms * 1e6),
        attributes=attributes({k.replace("__", "."): v for k, v in attrs.items()}),
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_UNSET),
    )


def tid(trace: int) -> str:
    return trace.to_bytes(16, "big").hex()


def sid(span: int) -> str:
    return span.to_bytes(8, "big").hex()


def make_request(spans: Any, service: str = "svc", **resource: Any) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={
                    "attributes": attributes(
                        {
                            "service.name": service,
                            **{k.replace("__", "."): v for k, v in resource.items()},
                        }
                    )
                },
                scope_spans=[ScopeSpans(spans=list(spans))],
            )
        ]
    )


def start_collector(
    tmp_path: Path, grpc: bool = False, db: str | None = None, **overrides: Any
) -> Collector:
    port = free_port()
    grpc_port = free_port() if grpc else None
    db = db or str(tmp_path / "collector.db")
    config = CollectorConfig(db_path=db, port=port, grpc_port=grpc_port, **overrides)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("collector did not start")
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    collector = Collector(
        url=url,
        db=db,
        config=config,
        api=httpx.Client(base_url=url, timeout=10),
        grpc_port=grpc_port,
    )
    collector._server = (server, thread)
    return collector


def stop_collector(collector: Collector) -> None:
    server, thread = collector._server
    collector.api.close()
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster for the whole session."""
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(params=STORES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ``--db`` value for an empty store of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "collector.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.database()


def another_store(request: pytest.FixtureRequest, tmp_path: Path, db: str) -> str:
    """A second empty store of the same kind as ``db`` (to compare two collectors)."""
    if db.startswith("postgresql"):
        server: PostgresServer = request.getfixturevalue("postgres")
        return server.database()
    return str(tmp_path / "another.db")


@pytest.fixture
def collector(tmp_path: Path, db: str) -> Iterator[Collector]:
    running = start_collector(tmp_path, db=db)
    yield running
    stop_collector(running)
