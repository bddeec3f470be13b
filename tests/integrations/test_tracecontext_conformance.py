"""W3C Trace Context conformance in the shape of the W3C test harness, over real sockets.

The test plays the harness: it sends raw header lines (repeated names, odd casing, OWS) to a
FastAPI service behind ``PlyraMiddleware`` served by uvicorn; the service calls back to the
harness through plyra's httpx transport; the test asserts what arrives at the callback. Run with
FastAPI's own tracing off (PlyraMiddleware reads the headers) and on (FastAPI reads them through
the global propagator, which ``init()`` makes ours).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import plyra_trace
from plyra_trace.integrations.httpx import PlyraTransport
from tests.integrations.http_servers import uvicorn_server
from tests.w3c_cases import CASES, PARENT_ID, TRACE_ID, VALID, Case


class _Harness:
    """Receives the service's callbacks and keeps every header line of each, as sent."""

    def __init__(self) -> None:
        self.received: dict[str, list[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        harness = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with harness._lock:
                    harness.received[self.path] = list(self.headers.items())
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._next = 0

    def callback_paths(self, count: int) -> list[str]:
        with self._lock:
            start, self._next = self._next, self._next + count
        return [f"/callback/{index}" for index in range(start, start + count)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _service(fastapi_tracing: bool) -> Any:
    app = FastAPI(telemetry={"tracing": fastapi_tracing})
    client = httpx.Client(transport=PlyraTransport())

    @app.post("/test")
    async def test(request: Request) -> dict[str, int]:
        urls = await request.json()
        for url in urls:  # sync httpx in the event loop: fine for a test service
            client.post(url, content=b"")
        return {"called": len(urls)}

    app.add_middleware(plyra_trace.PlyraMiddleware)
    return app


@pytest.fixture(scope="module")
def harness() -> Iterator[_Harness]:
    server = _Harness()
    yield server
    server.close()


@pytest.fixture(scope="module", params=["plyra-reads-headers", "fastapi-reads-headers"])
def service(request: pytest.FixtureRequest) -> Iterator[str]:
    handle = plyra_trace.init("conformance", exporter=InMemorySpanExporter(), batch=False)
    try:
        with uvicorn_server(_service(request.param == "fastapi-reads-headers")) as url:
            yield url
    finally:
        handle.shutdown()


def _call(service: str, harness: _Harness, headers: tuple[tuple[str, str], ...], count: int = 1):
    """Send ``headers`` as raw lines; return the header lines of each callback."""
    paths = harness.callback_paths(count)
    body = json.dumps([harness.url + path for path in paths]).encode()
    host, port = service.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/test")
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("content-type", "application/json")
        connection.putheader("content-length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()
    finally:
        connection.close()
    return [harness.received[path] for path in paths]


def _traceparent(lines: list[tuple[str, str]]) -> tuple[str, str]:
    values = [value for name, value in lines if name.lower() == "traceparent"]
    assert len(values) == 1, lines
    version, trace_id, parent_id, flags = values[0].split("-")
    assert (version, len(trace_id), len(parent_id), len(flags)) == ("00", 32, 16, 2)
    return trace_id, parent_id


def _tracestate(lines: list[tuple[str, str]]) -> str | None:
    values = [value for name, value in lines if name.lower() == "tracestate"]
    return ",".join(values) if values else None


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_level_1_case(service: str, harness: _Harness, case: Case) -> None:
    (callback,) = _call(service, harness, case.headers)
    trace_id, parent_id = _traceparent(callback)
    assert (trace_id == TRACE_ID) is case.continued
    assert parent_id != PARENT_ID
    assert _tracestate(callback) == case.tracestate


@pytest.mark.parametrize(
    ("headers", "continued"),
    [
        ((("traceparent", VALID),), True),
        ((), False),
        ((("traceparent", f"00-{'0' * 32}-{PARENT_ID}-01"),), False),
    ],
    ids=["valid", "none", "invalid"],
)
def test_several_calls_share_the_trace_with_their_own_parent_ids(
    service: str, harness: _Harness, headers: tuple[tuple[str, str], ...], continued: bool
) -> None:
    callbacks = [_traceparent(lines) for lines in _call(service, harness, headers, count=3)]
    trace_ids = {trace_id for trace_id, _ in callbacks}
    assert len(trace_ids) == 1  # one request, one trace
    assert (TRACE_ID in trace_ids) is continued
    assert "0" * 32 not in trace_ids
    assert len({parent_id for _, parent_id in callbacks}) == 3
