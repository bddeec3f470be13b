"""PlyraWSGIMiddleware and Flask's instrument_app, served by werkzeug's real WSGI server."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from werkzeug.test import create_environ

import plyra_trace
from plyra_trace.integrations.flask import instrument_app
from plyra_trace.integrations.httpx import PlyraTransport
from plyra_trace.integrations.wsgi import PlyraWSGIMiddleware
from tests.integrations.http_servers import wsgi_server

pytestmark = pytest.mark.timeout(60)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _servers(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


def _wait_servers(exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    deadline = time.monotonic() + 10
    while len(_servers(exporter)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} server spans, got {len(_servers(exporter))}")
        time.sleep(0.01)
    return _servers(exporter)


def _flask_app() -> Flask:
    app = Flask("drafts")

    @plyra_trace.agent(name="writer")
    def write(draft_id: int) -> str:
        return f"draft {draft_id} for {baggage.get_baggage('session.id')}"

    @app.get("/drafts/<int:draft_id>")
    def draft(draft_id: int) -> str:
        return write(draft_id)

    @app.get("/fail")
    def fail() -> str:
        return str(1 / 0)

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for index in range(3):
                time.sleep(0.03)
                span = trace.get_current_span()
                yield f"{index}:{span.get_span_context().is_valid}\n"

        return Response(chunks(), mimetype="text/plain")

    @app.get("/where")
    def where() -> str:
        return f"{trace.get_current_span().get_span_context().trace_id:032x}"

    @app.get("/health")
    def health() -> str:
        return "ok"

    return instrument_app(app, agent_name="writer", excluded_urls=["^/health$"])


@pytest.fixture(scope="module")
def flask_url() -> Iterator[str]:
    with wsgi_server(_flask_app(), threaded=False) as url:  # one thread serves every request
        yield url


def test_flask_request_continues_the_callers_trace_with_the_handoff(
    exporter: InMemorySpanExporter, flask_url: str
) -> None:
    client = httpx.Client(transport=PlyraTransport(), base_url=flask_url)

    @plyra_trace.agent(name="editor")
    def edit() -> str:
        with plyra_trace.handoff(reason="needs a first draft"):
            return client.get("/drafts/9").text

    with plyra_trace.session("sess-9"), plyra_trace.user("ada"):
        assert edit() == "draft 9 for sess-9"
    (server,) = _wait_servers(exporter, 1)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    (client_span,) = [s for s in spans.values() if s.kind is SpanKind.CLIENT]
    assert server.name == "GET /drafts/<int:draft_id>"
    assert server.parent is not None and server.parent.span_id == client_span.context.span_id
    writer = spans["writer"]
    assert writer.parent is not None and writer.parent.span_id == server.context.span_id
    assert len({s.context.trace_id for s in spans.values()}) == 1
    attributes = server.attributes or {}
    assert attributes["agent.handoff.from"] == "editor"
    assert attributes["agent.handoff.to"] == "writer"
    assert attributes["agent.handoff.reason"] == "needs a first draft"
    assert attributes["agent.handoff.protocol"] == "http"
    assert attributes["http.route"] == "/drafts/<int:draft_id>"
    for span in spans.values():
        assert (span.attributes or {})["session.id"] == "sess-9", span.name
        assert (span.attributes or {})["user.id"] == "ada", span.name


def test_flask_exception_is_recorded_and_the_response_is_still_a_500(
    exporter: InMemorySpanExporter, flask_url: str
) -> None:
    assert httpx.get(f"{flask_url}/fail").status_code == 500
    (server,) = _wait_servers(exporter, 1)
    assert server.name == "GET /fail"
    assert server.status.status_code is StatusCode.ERROR
    assert (server.attributes or {})["http.response.status_code"] == 500
    (event,) = [e for e in server.events if e.name == "exception"]
    assert (event.attributes or {})["exception.type"] == "ZeroDivisionError"


def test_streamed_body_runs_in_the_request_context_and_ends_the_span(
    exporter: InMemorySpanExporter, flask_url: str
) -> None:
    with httpx.stream("GET", f"{flask_url}/stream") as response:
        assert response.read() == b"0:True\n1:True\n2:True\n"
    (server,) = _wait_servers(exporter, 1)
    attributes = server.attributes or {}
    assert attributes["plyra.http.response.chunks"] == 3
    assert server.end_time is not None and server.start_time is not None
    assert (server.end_time - server.start_time) / 1e6 >= 80
    assert float(str(attributes["plyra.http.time_to_first_byte_ms"])) >= 25


def test_no_context_leaks_between_requests_on_a_reused_thread(
    exporter: InMemorySpanExporter, flask_url: str
) -> None:
    first = httpx.get(f"{flask_url}/where", headers={"traceparent": TRACEPARENT}).text
    second = httpx.get(f"{flask_url}/where").text
    assert first == TRACEPARENT.split("-")[1]
    assert second != first
    servers = _wait_servers(exporter, 2)
    assert [s.parent is None for s in servers] == [False, True]
    assert httpx.get(f"{flask_url}/health").text == "ok"
    time.sleep(0.05)
    assert len(_servers(exporter)) == 2  # /health is excluded


def _plain_app(chunks: Iterable[bytes], status: str = "200 OK") -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response(status, [("content-type", "text/plain")])
        return chunks

    return app


class _Closable:
    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"never read"

    def close(self) -> None:
        self.closed = True


def test_span_ends_when_the_server_closes_without_iterating(
    exporter: InMemorySpanExporter,
) -> None:
    body = _Closable()
    inner = PlyraWSGIMiddleware(_plain_app(body), agent_name="nested")  # adds nothing
    middleware = PlyraWSGIMiddleware(inner, agent_name="plain")
    result = middleware(create_environ("/x"), lambda status, headers, exc_info=None: None)
    assert exporter.get_finished_spans() == ()
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached
    result.close()  # type: ignore[attr-defined]
    assert body.closed
    (server,) = _servers(exporter)
    assert server.name == "GET"
    assert (server.attributes or {})["plyra.http.response.chunks"] == 0
    assert (server.attributes or {})["agent.name"] == "plain"


def test_wsgi_5xx_and_untrusted_caller(exporter: InMemorySpanExporter) -> None:
    app = PlyraWSGIMiddleware(
        _plain_app([b"down"], "503 Service Unavailable"), trust_incoming=False
    )
    environ = create_environ(
        "/y", headers={"traceparent": TRACEPARENT, "baggage": "session.id=forged"}
    )
    result = app(environ, lambda status, headers, exc_info=None: None)
    assert b"".join(result) == b"down"
    result.close()  # type: ignore[attr-defined]
    (server,) = _servers(exporter)
    assert server.status.status_code is StatusCode.ERROR
    assert server.parent is None
    assert server.context.trace_id != int(TRACEPARENT.split("-")[1], 16)
    assert [link.context.span_id for link in server.links] == [int("00f067aa0ba902b7", 16)]
    assert "session.id" not in (server.attributes or {})


def test_wsgi_app_exception_propagates_unchanged(exporter: InMemorySpanExporter) -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        raise LookupError("no such thing")

    with pytest.raises(LookupError, match="no such thing"):
        PlyraWSGIMiddleware(broken)(create_environ("/z"), lambda *a: None)
    (server,) = _servers(exporter)
    assert server.status.status_code is StatusCode.ERROR
    assert (server.attributes or {})["http.response.status_code"] == 500
    assert trace.get_current_span() is trace.INVALID_SPAN


_hostile = st.one_of(
    st.binary(max_size=300).map(lambda raw: raw.decode("latin-1")),
    st.text(max_size=200),
    st.just("session.id=" + "x" * 100_000),
    st.sampled_from(["00-zz-yy-01", "ff-" + "0" * 32 + "-" + "0" * 16 + "-00", "=;,%%"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["HTTP_TRACEPARENT", "HTTP_TRACESTATE", "HTTP_BAGGAGE", "HTTP_B3"]),
        _hostile,
        max_size=4,
    )
)
def test_hostile_headers_never_break_a_wsgi_request(headers: dict[str, str]) -> None:
    app = PlyraWSGIMiddleware(_plain_app([b"fine"]), agent_name="hardened")
    environ = create_environ("/h")
    environ.update(headers)
    statuses: list[str] = []
    result = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert b"".join(result) == b"fine"
    result.close()  # type: ignore[attr-defined]
    assert statuses == ["200 OK"]
