"""PlyraMiddleware against real FastAPI/Starlette apps, served by real uvicorn where it matters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

import plyra_trace
from plyra_trace import PlyraMiddleware
from plyra_trace.integrations.httpx import AsyncPlyraTransport, PlyraTransport
from tests.integrations.http_servers import uvicorn_server

pytestmark = pytest.mark.timeout(60)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _servers(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is SpanKind.SERVER]


def _wait_for(exporter: InMemorySpanExporter, predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(exporter.get_finished_spans()):
        if time.monotonic() > deadline:
            names = [s.name for s in exporter.get_finished_spans()]
            raise AssertionError(f"spans never matched; got {names}")
        time.sleep(0.01)


def _fastapi_app(**options: Any) -> FastAPI:
    app = FastAPI(**options.pop("fastapi", {}))

    @plyra_trace.agent(name="researcher")
    def research(item_id: int) -> dict[str, Any]:
        return {"item": item_id, "session": baggage.get_baggage("session.id")}

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, Any]:
        return research(item_id)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaput")

    @app.get("/unavailable")
    def unavailable() -> JSONResponse:
        return JSONResponse({"down": True}, status_code=503)

    @app.get("/health")
    def health() -> str:
        return "ok"

    app.add_middleware(PlyraMiddleware, **options)
    return app


@pytest.fixture(scope="module")
def fastapi_url() -> Iterator[str]:
    app = _fastapi_app(agent_name="researcher", excluded_urls=["^/health$"])
    with uvicorn_server(app) as url:
        yield url


def test_fastapi_request_is_one_trace_from_calling_agent_to_server_agent(
    exporter: InMemorySpanExporter, fastapi_url: str
) -> None:
    client = httpx.Client(transport=PlyraTransport(), base_url=fastapi_url)

    @plyra_trace.agent(name="planner")
    def plan() -> Any:
        with plyra_trace.handoff(to="researcher", reason="needs facts"):
            return client.get("/items/7").json()

    with plyra_trace.session("s-42"), plyra_trace.user("u-1"):
        body = plan()
    assert body == {"item": 7, "session": "s-42"}
    _wait_for(exporter, lambda spans: len(_servers(spans)) == 1 and len(spans) >= 4)
    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    server = _servers(spans)
    assert len(server) == 1, [s.name for s in spans]
    assert server[0].name == "GET /items/{item_id}"
    planner, researcher = by_name["planner"], by_name["researcher"]
    (client_span,) = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len({s.context.trace_id for s in spans}) == 1
    assert client_span.parent is not None and client_span.parent.span_id == planner.context.span_id
    assert server[0].parent is not None
    assert server[0].parent.span_id == client_span.context.span_id
    # researcher runs under FastAPI's endpoint operation span, inside the server span
    chain, cursor = [], researcher
    ids = {s.context.span_id: s for s in spans}
    while cursor.parent is not None and cursor.parent.span_id in ids:
        cursor = ids[cursor.parent.span_id]
        chain.append(cursor.name)
    assert "GET /items/{item_id}" in chain and chain[-1] == "planner"
    attributes = server[0].attributes or {}
    assert attributes["agent.handoff.from"] == "planner"
    assert attributes["agent.handoff.to"] == "researcher"
    assert attributes["agent.handoff.reason"] == "needs facts"
    assert attributes["agent.handoff.protocol"] == "http"
    assert attributes["http.route"] == "/items/{item_id}"
    assert attributes["http.response.status_code"] == 200
    for span in spans:
        assert (span.attributes or {}).get("session.id") == "s-42", span.name
        assert (span.attributes or {}).get("user.id") == "u-1", span.name
    assert "agent.handoff.from" not in (researcher.attributes or {})


def test_fastapi_errors_and_404_and_excluded_urls(
    exporter: InMemorySpanExporter, fastapi_url: str
) -> None:
    # uvicorn drops a connection whose request raised: one connection per request
    assert httpx.get(f"{fastapi_url}/boom").status_code == 500
    assert httpx.get(f"{fastapi_url}/unavailable").status_code == 503
    assert httpx.get(f"{fastapi_url}/no/such/path").status_code == 404
    assert httpx.get(f"{fastapi_url}/health").text == '"ok"'
    _wait_for(exporter, lambda spans: len(_servers(spans)) >= 4)
    servers = {s.name: s for s in _servers(exporter.get_finished_spans())}
    assert set(servers) == {"GET /boom", "GET /unavailable", "GET", "GET /health"}
    # FastAPI's own span for an excluded path is left alone: no plyra attributes on it
    assert "agent.name" not in (servers["GET /health"].attributes or {})
    assert (servers["GET /boom"].attributes or {})["agent.name"] == "researcher"
    assert servers["GET /boom"].status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in servers["GET /boom"].events)
    assert servers["GET /unavailable"].status.status_code is StatusCode.ERROR
    assert servers["GET"].status.status_code is not StatusCode.ERROR
    assert (servers["GET"].attributes or {})["http.response.status_code"] == 404


def test_fastapi_without_own_tracing_gets_our_span(exporter: InMemorySpanExporter) -> None:
    app = _fastapi_app(agent_name="researcher", fastapi={"telemetry": {"tracing": False}})
    with TestClient(app) as client:
        response = client.get("/items/3", headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    (server,) = _servers(exporter.get_finished_spans())
    assert server.name == "GET /items/{item_id}"
    assert server.context.trace_id == int(TRACEPARENT.split("-")[1], 16)
    assert (server.attributes or {})["agent.name"] == "researcher"
    assert server.instrumentation_scope is not None
    assert server.instrumentation_scope.name == "plyra_trace"


def test_middleware_wrapping_fastapi_from_outside_makes_fastapi_step_aside(
    exporter: InMemorySpanExporter,
) -> None:
    inner = FastAPI()

    @inner.get("/users/{user_id}")
    def get_user(user_id: str) -> str:
        return user_id

    inner.add_middleware(PlyraMiddleware, agent_name="inner")  # nested: adds nothing
    app = PlyraMiddleware(inner, agent_name="users")
    with TestClient(app) as client:
        assert client.get("/users/ann").json() == "ann"
    servers = _servers(exporter.get_finished_spans())
    assert [s.name for s in servers] == ["GET /users/{user_id}"]
    assert (servers[0].attributes or {})["agent.name"] == "users"


def _starlette_app(**options: Any) -> Starlette:
    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            for index in range(3):
                await asyncio.sleep(0.05)
                yield f"data: {index}\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def events(request: Request) -> EventSourceResponse:
        async def produce() -> AsyncIterator[dict[str, str]]:
            for index in range(3):
                await asyncio.sleep(0.03)
                yield {"event": "tick", "data": str(index)}

        return EventSourceResponse(produce())

    async def broken_stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            yield "first"
            raise ValueError("mid-stream")

        return StreamingResponse(chunks())

    async def crash(request: Request) -> PlainTextResponse:
        raise KeyError("before any byte")

    async def echo_session(request: Request) -> PlainTextResponse:
        await asyncio.sleep(0.001)
        return PlainTextResponse(str(baggage.get_baggage("session.id")))

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("fine")

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def room(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(text.upper())
        await websocket.close()

    async def sub(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["name"])

    app = Starlette(
        routes=[
            Route("/stream", stream),
            Route("/events", events),
            Route("/broken", broken_stream),
            Route("/crash", crash),
            Route("/session/{n}", echo_session),
            Route("/plain", plain),
            Route("/health", health),
            WebSocketRoute("/ws/{room}", room),
            Mount("/api", routes=[Route("/things/{name}", sub)]),
        ]
    )
    app.add_middleware(PlyraMiddleware, **options)
    return app


@pytest.fixture(scope="module")
def starlette_url() -> Iterator[str]:
    app = _starlette_app(agent_name="streamer", excluded_urls="^/health$")
    with uvicorn_server(app) as url:
        yield url


def test_streaming_span_ends_with_the_body(
    exporter: InMemorySpanExporter, starlette_url: str
) -> None:
    client = httpx.Client(transport=PlyraTransport(), base_url=starlette_url)
    with client.stream("GET", "/stream") as response:
        received = list(response.iter_text())
        last_chunk_at = time.time_ns()
    assert "".join(received) == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    _wait_for(exporter, lambda spans: len(_servers(spans)) == 1)
    spans = exporter.get_finished_spans()
    (server,) = _servers(spans)
    (client_span,) = [s for s in spans if s.kind is SpanKind.CLIENT]
    attributes = server.attributes or {}
    assert server.name == "GET /stream"
    assert attributes["plyra.http.response.chunks"] == 3
    ttfb = attributes["plyra.http.time_to_first_byte_ms"]
    assert isinstance(ttfb, float)
    assert server.end_time is not None and server.start_time is not None
    duration_ms = (server.end_time - server.start_time) / 1e6
    assert 40 <= ttfb < duration_ms and duration_ms >= 140  # ended after the last chunk
    assert client_span.end_time is not None and client_span.end_time <= last_chunk_at
    assert client_span.end_time >= server.end_time - 50_000_000  # scheduling slack
    assert server.parent is not None and server.parent.span_id == client_span.context.span_id


def test_server_sent_events_span_covers_every_event(
    exporter: InMemorySpanExporter, starlette_url: str
) -> None:
    with httpx.stream("GET", f"{starlette_url}/events") as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert lines == ["data: 0", "data: 1", "data: 2"]
    _wait_for(exporter, lambda spans: len(_servers(spans)) == 1)
    (server,) = _servers(exporter.get_finished_spans())
    attributes = server.attributes or {}
    assert server.name == "GET /events"
    assert int(str(attributes["plyra.http.response.chunks"])) >= 3
    assert server.end_time is not None and server.start_time is not None
    assert (server.end_time - server.start_time) / 1e6 >= 85


def test_exceptions_before_and_after_the_response_starts(
    exporter: InMemorySpanExporter, starlette_url: str
) -> None:
    assert httpx.get(f"{starlette_url}/crash").status_code == 500
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{starlette_url}/broken")
    assert httpx.get(f"{starlette_url}/plain").text == "fine"
    assert httpx.get(f"{starlette_url}/health").text == "ok"
    _wait_for(exporter, lambda spans: len(_servers(spans)) == 3)
    time.sleep(0.1)
    servers = {s.name: s for s in _servers(exporter.get_finished_spans())}
    crash, broken = servers["GET /crash"], servers["GET /broken"]
    assert crash.status.status_code is StatusCode.ERROR
    assert (crash.attributes or {})["http.response.status_code"] == 500
    assert (crash.attributes or {})["error.type"] == "KeyError"
    assert broken.status.status_code is StatusCode.ERROR
    assert (broken.attributes or {})["http.response.status_code"] == 200
    assert (broken.attributes or {})["error.type"] == "ValueError"
    assert servers["GET /plain"].status.status_code is StatusCode.UNSET
    assert set(servers) == {"GET /crash", "GET /broken", "GET /plain"}  # /health excluded


def test_mounted_route_template(exporter: InMemorySpanExporter, starlette_url: str) -> None:
    assert httpx.get(f"{starlette_url}/api/things/bolt").text == "bolt"
    _wait_for(exporter, lambda spans: len(_servers(spans)) == 1)
    (server,) = _servers(exporter.get_finished_spans())
    assert server.name == "GET /api/things/{name}"


def test_concurrent_requests_never_mix_sessions(
    exporter: InMemorySpanExporter, starlette_url: str
) -> None:
    async def one(client: httpx.AsyncClient, index: int) -> tuple[int, str]:
        with plyra_trace.session(f"s{index}"):
            response = await client.get(f"/session/{index}")
        return index, response.text

    async def run() -> list[tuple[int, str]]:
        limits = httpx.Limits(max_connections=50)
        transport = AsyncPlyraTransport(httpx.AsyncHTTPTransport(limits=limits))
        async with httpx.AsyncClient(transport=transport, base_url=starlette_url) as client:
            return await asyncio.gather(*(one(client, i) for i in range(200)))

    results = asyncio.run(run())
    assert all(text == f"s{index}" for index, text in results)
    _wait_for(exporter, lambda spans: len(_servers(spans)) == 200)
    spans = exporter.get_finished_spans()
    clients = {s.context.span_id: s for s in spans if s.kind is SpanKind.CLIENT}
    for server in _servers(spans):
        index = str((server.attributes or {})["url.path"]).rsplit("/", 1)[1]
        assert (server.attributes or {})["session.id"] == f"s{index}"
        assert server.parent is not None
        caller = clients[server.parent.span_id]
        assert str((caller.attributes or {})["url.full"]).endswith(f"/session/{index}")


def test_websocket_gets_one_span_and_lifespan_none(exporter: InMemorySpanExporter) -> None:
    with TestClient(_starlette_app()) as client:  # runs lifespan startup and shutdown
        with client.websocket_connect("/ws/blue") as websocket:
            websocket.send_text("hi")
            assert websocket.receive_text() == "HI"
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["WS /ws/{room}"]
    assert spans[0].kind is SpanKind.SERVER
    assert spans[0].status.status_code is not StatusCode.ERROR


def test_untrusted_caller_gets_a_new_linked_trace_without_its_baggage(
    exporter: InMemorySpanExporter,
) -> None:
    app = _starlette_app(trust_incoming=False, agent_name="public")
    headers = {
        "traceparent": TRACEPARENT,
        "baggage": "session.id=evil,plyra.handoff.from=mallory",
    }
    with TestClient(app) as client:
        assert client.get("/session/1", headers=headers).text == "None"
    (server,) = _servers(exporter.get_finished_spans())
    caller_trace = int(TRACEPARENT.split("-")[1], 16)
    assert server.context.trace_id != caller_trace
    assert server.parent is None
    assert [link.context.trace_id for link in server.links] == [caller_trace]
    attributes = server.attributes or {}
    assert "session.id" not in attributes and "agent.handoff.from" not in attributes


def test_capture_headers_allowlist(exporter: InMemorySpanExporter) -> None:
    app = _starlette_app(capture_headers=["X-Tenant", "content-type"])
    with TestClient(app) as client:
        client.get("/plain", headers={"x-tenant": "acme", "authorization": "secret"})
    (server,) = _servers(exporter.get_finished_spans())
    attributes = server.attributes or {}
    assert attributes["http.request.header.x-tenant"] == ("acme",)
    assert attributes["http.response.header.content-type"] == ("text/plain; charset=utf-8",)
    assert not any("authorization" in key for key in attributes)


def _asgi_get(app: Any, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """One GET /plain through the real middleware with raw header bytes; (status, body)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/plain",
        "raw_path": b"/plain",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"svc"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


_header_value = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"00-" + b"f" * 32 + b"-" + b"0" * 16 + b"-01",
            b"00-zzzz-yyyy-01",
            b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            b"session.id=%ZZ,=;;,plyra.handoff.from",
            b"\xff\xfe\x00",
        ]
    ),
)
_header_name = st.sampled_from([b"traceparent", b"tracestate", b"baggage", b"b3", b"x-b3-traceid"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_header_name, _header_value), max_size=6))
def test_hostile_headers_never_cause_an_error_response(
    headers: list[tuple[bytes, bytes]],
) -> None:
    app = _starlette_app(agent_name="hardened")
    assert _asgi_get(app, headers) == (200, b"fine")


def test_huge_baggage_and_duplicate_headers_are_served(exporter: InMemorySpanExporter) -> None:
    app = _starlette_app(agent_name="hardened")
    huge = b"session.id=" + b"x" * 100_000
    status, body = _asgi_get(
        app,
        [
            (b"baggage", huge),
            (b"traceparent", TRACEPARENT.encode()),
            (b"traceparent", b"00-garbage"),
            (b"baggage", b"session.id=second"),
        ],
    )
    assert (status, body) == (200, b"fine")
    (server,) = _servers(exporter.get_finished_spans())
    # two traceparent lines make the context invalid (W3C): a new trace starts
    assert server.context.trace_id != int(TRACEPARENT.split("-")[1], 16)
    assert server.parent is None
    assert not any("xxxxxxxx" in str(value) for value in (server.attributes or {}).values())


def test_malformed_traceparent_starts_a_fresh_root(exporter: InMemorySpanExporter) -> None:
    app = _starlette_app()
    assert _asgi_get(app, [(b"traceparent", b"00-nothex-nothex-01")]) == (200, b"fine")
    (server,) = _servers(exporter.get_finished_spans())
    assert server.parent is None


def test_plain_opentelemetry_and_b3_only_peers_join_the_trace(
    exporter: InMemorySpanExporter,
) -> None:
    from opentelemetry import propagate, trace

    from plyra_trace import _propagation

    app = _starlette_app()
    plain: dict[str, str] = {}
    with trace.get_tracer("plain-otel").start_as_current_span("caller") as caller:
        propagate.inject(plain)  # OpenTelemetry's global propagator, no plyra involved
    assert _asgi_get(app, [(k.encode(), v.encode()) for k, v in plain.items()])[0] == 200
    _propagation.configure(["tracecontext", "baggage", "b3multi"])
    try:
        b3 = [
            (b"x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124"),
            (b"x-b3-spanid", b"a2fb4a1d1a96d312"),
            (b"x-b3-sampled", b"1"),
        ]
        assert _asgi_get(app, b3) == (200, b"fine")
    finally:
        _propagation.configure()
    first, second = _servers(exporter.get_finished_spans())
    assert first.parent is not None
    assert first.parent.span_id == caller.get_span_context().span_id
    assert second.context.trace_id == 0x463AC35C9F6413AD48485A3953BB6124
    assert second.parent is not None and second.parent.span_id == 0xA2FB4A1D1A96D312


class _BrokenTracer:
    """A tracer whose every span start fails, standing in for a bug in instrumentation."""

    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("instrumentation bug")


def test_instrumentation_failure_never_breaks_a_request(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plyra_trace import _runtime

    monkeypatch.setattr(_runtime, "tracer", _BrokenTracer())
    assert _asgi_get(_starlette_app(agent_name="x"), [(b"traceparent", TRACEPARENT.encode())]) == (
        200,
        b"fine",
    )
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent", ""))
        return httpx.Response(204)

    with httpx.Client(transport=PlyraTransport(httpx.MockTransport(handler))) as client:
        assert client.get("http://svc.internal/").status_code == 204
    assert seen == [""]
    assert exporter.get_finished_spans() == ()


def test_fastapi_untrusted_caller_loses_its_baggage(exporter: InMemorySpanExporter) -> None:
    app = _fastapi_app(trust_incoming=False)
    headers = {"traceparent": TRACEPARENT, "baggage": "session.id=forged"}
    with TestClient(app) as client:
        body = client.get("/items/1", headers=headers).json()
    assert body == {"item": 1, "session": None}
    for span in exporter.get_finished_spans():
        assert "session.id" not in (span.attributes or {}), span.name


def test_lifespan_shutdown_exports_the_queued_spans(receiver):
    """uvicorn re-raises SIGTERM after its graceful shutdown, so atexit never runs: the middleware
    flushes when the app reports lifespan shutdown complete."""
    import os
    import urllib.request

    from tests.processes import ROOT, python_service

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with python_service("tests.integrations.asgi_shutdown_app", receiver.url, env=env) as port:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/ask",
            data=b'{"question": "why"}',
            headers={"content-type": "application/json"},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert response.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "the service never answered"
                time.sleep(0.1)
        assert receiver.spans == []  # the one-minute export timer has not fired
    names = {span.name for span in receiver.spans}  # stopped with SIGTERM on leaving the block
    assert {"POST /ask", "gateway"} <= names
