"""The httpx/httpx2 transports: CLIENT spans, injected context, the host allowlist, streaming."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import httpx2
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import plyra_trace
from plyra_trace.integrations.httpx import AsyncPlyraTransport, PlyraTransport, instrument_client
from tests.integrations.http_servers import wsgi_server

pytestmark = pytest.mark.timeout(60)


def _clients(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]


def _baggage(headers: Any) -> dict[str, str]:
    raw = headers.get("baggage") or ""
    pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
    return {key.strip(): httpx.URL(f"http://x/?v={value}").params["v"] for key, value in pairs}


class _Recorder:
    """A MockTransport handler that remembers the headers of every request."""

    def __init__(self, status: int = 200, body: bytes = b"ok") -> None:
        self.headers: list[dict[str, str]] = []
        self.suppressed: list[object] = []
        self.status = status
        self.body = body

    def __call__(self, request: Any) -> Any:
        self.headers.append(dict(request.headers))
        self.suppressed.append(
            otel_context.get_value(otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY)
        )
        library = httpx2 if type(request).__module__ == "httpx2" else httpx
        return library.Response(self.status, content=self.body)


@pytest.mark.parametrize("library", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_sync_request_is_one_client_span_carrying_the_handoff(
    exporter: InMemorySpanExporter, library: Any
) -> None:
    recorder = _Recorder()
    client = library.Client(transport=PlyraTransport(library.MockTransport(recorder)))

    @plyra_trace.agent(name="planner")
    def plan() -> str:
        with plyra_trace.handoff(to="researcher", reason="find sources"):
            return str(client.get("http://research.internal/q?api_key=s3cret&x=1").text)

    with plyra_trace.session("s-1"), plyra_trace.user("u-1"):
        assert plan() == "ok"
    (span,) = _clients(exporter)
    sent = recorder.headers[0]
    assert sent["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"
    assert _baggage(sent) == {
        "session.id": "s-1",
        "user.id": "u-1",
        "plyra.handoff.from": "planner",
        "plyra.handoff.to": "researcher",
        "plyra.handoff.reason": "find sources",
        "plyra.handoff.protocol": "http",
    }
    attributes = span.attributes or {}
    assert span.name == "GET"
    assert attributes["http.response.status_code"] == 200
    assert attributes["server.address"] == "research.internal"
    assert attributes["url.full"] == "http://research.internal/q?api_key=REDACTED&x=1"
    assert attributes["session.id"] == "s-1"
    assert recorder.suppressed == [True]  # OpenTelemetry's httpx instrumentation stands aside


@pytest.mark.parametrize("library", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_async_client_and_instrument_client(exporter: InMemorySpanExporter, library: Any) -> None:
    recorder = _Recorder(status=502)

    async def call() -> int:
        async with instrument_client(
            library.AsyncClient(transport=library.MockTransport(recorder))
        ) as client:
            response = await client.get("http://svc.internal/x")
            return int(response.status_code)

    assert asyncio.run(call()) == 502
    (span,) = _clients(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "502"
    assert "traceparent" in recorder.headers[0]


def test_propagate_to_keeps_context_from_third_parties(exporter: InMemorySpanExporter) -> None:
    recorder = _Recorder()
    transport = PlyraTransport(
        httpx.MockTransport(recorder), propagate_to=["*.internal", "127.0.0.1:8000"]
    )
    with httpx.Client(transport=transport) as client, plyra_trace.session("secret-session"):
        client.get("http://api.llm-provider.com/v1/chat")
        client.get("http://billing.internal/charge")
        client.get("http://127.0.0.1:8000/a")
        client.get("http://127.0.0.1:9000/b")
    assert ["traceparent" in h for h in recorder.headers] == [False, True, True, False]
    assert "baggage" not in recorder.headers[0]
    assert len(_clients(exporter)) == 4  # still traced locally


def test_streamed_response_span_ends_when_the_stream_closes(
    exporter: InMemorySpanExporter,
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())

    with httpx.Client(transport=PlyraTransport(httpx.MockTransport(handler))) as client:
        with client.stream("GET", "http://svc.internal/s") as response:
            iterator = response.iter_bytes()
            assert next(iterator) == b"a"
            del iterator  # the reader stops early: its generator closes, not an error
            assert [s.status.status_code for s in _clients(exporter)] in ([], [StatusCode.UNSET])
        (span,) = _clients(exporter)
        assert span.status.status_code is StatusCode.UNSET
        # a body closed without being read ends the span too
        with client.stream("GET", "http://svc.internal/s"):
            pass
        assert len(_clients(exporter)) == 2


def test_transport_errors_pass_through_unchanged(exporter: InMemorySpanExporter) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with httpx.Client(transport=PlyraTransport(httpx.MockTransport(handler))) as client:
        with pytest.raises(httpx.ConnectError, match="refused"):
            client.get("http://down.internal/")
    (span,) = _clients(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "httpx.ConnectError"
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_existing_opentelemetry_httpx_span_means_no_second_span(
    exporter: InMemorySpanExporter,
) -> None:
    recorder = _Recorder()
    otel_tracer = trace.get_tracer("opentelemetry.instrumentation.httpx")
    with httpx.Client(transport=PlyraTransport(httpx.MockTransport(recorder))) as client:
        with (
            plyra_trace.handoff(to="billing", reason="charge"),
            otel_tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as otel_span,
        ):
            client.get("http://svc.internal/")
    assert [
        s.instrumentation_scope.name for s in _clients(exporter) if s.instrumentation_scope
    ] == ["opentelemetry.instrumentation.httpx"]
    # its span is the parent the server sees, and the handoff still travels
    sent = recorder.headers[0]
    assert sent["traceparent"].split("-")[2] == f"{otel_span.get_span_context().span_id:016x}"
    assert _baggage(sent)["plyra.handoff.reason"] == "charge"


def test_instrument_client_keeps_the_proxy_setting(exporter: InMemorySpanExporter) -> None:
    seen: list[dict[str, str]] = []

    def proxy(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.append(
            {
                "uri": str(environ.get("REQUEST_URI") or environ.get("RAW_URI")),
                "traceparent": str(environ.get("HTTP_TRACEPARENT")),
            }
        )
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"via proxy"]

    with wsgi_server(proxy) as proxy_url:
        client = instrument_client(httpx.Client(proxy=proxy_url, trust_env=False))
        with client:
            assert client.get("http://upstream.internal/data").text == "via proxy"
    assert seen[0]["uri"] == "http://upstream.internal/data"
    (span,) = _clients(exporter)
    assert seen[0]["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"
    assert instrument_client(client) is client  # idempotent


def test_async_transport_type_checks_for_both_libraries() -> None:
    recorder = _Recorder()
    first = httpx.AsyncClient(transport=AsyncPlyraTransport(httpx.MockTransport(recorder)))
    second = httpx2.Client(transport=PlyraTransport(httpx2.MockTransport(recorder)))
    assert second.get("http://a.internal/").text == "ok"
    asyncio.run(first.aclose())
    second.close()
