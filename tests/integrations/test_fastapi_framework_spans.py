"""FastAPI's own operation spans: kept by default, turned off with ``framework_spans=False``, and
labelled FRAMEWORK (not UNKNOWN) by the collector."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import plyra_trace
from plyra_trace import PlyraMiddleware
from plyra_trace.collector.config import CollectorConfig
from plyra_trace.collector.normalise import Normaliser
from plyra_trace.collector.pricing import Pricer

pytestmark = pytest.mark.timeout(60)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OPERATIONS = {
    "fastapi.dependencies",
    "fastapi.endpoint",
    "fastapi.serialization",
    "fastapi.background_task",
}


def _app(**middleware: Any) -> FastAPI:
    app = FastAPI()

    def tenant() -> str:
        return "acme"

    @plyra_trace.agent(name="researcher")
    def research(item_id: int) -> dict[str, Any]:
        return {"item": item_id}

    @plyra_trace.tool(name="audit")
    def audit(item_id: int) -> None:
        return None

    @app.get("/items/{item_id}")
    def item(item_id: int, tasks: BackgroundTasks, who: str = Depends(tenant)) -> dict[str, Any]:
        tasks.add_task(audit, item_id)
        return {**research(item_id), "tenant": who}

    app.add_middleware(PlyraMiddleware, agent_name="researcher", **middleware)
    return app


def _spans(exporter: InMemorySpanExporter, app: FastAPI) -> dict[str, ReadableSpan]:
    """The spans of one in-process request to ``app``, by name."""

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            return await client.get("/items/7", headers={"traceparent": TRACEPARENT})

    assert asyncio.run(call()).json() == {"item": 7, "tenant": "acme"}
    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    assert len(by_name) == len(spans), [s.name for s in spans]  # one span per operation
    return by_name


def _server(spans: dict[str, ReadableSpan]) -> ReadableSpan:
    (server,) = [s for s in spans.values() if s.kind is SpanKind.SERVER]
    return server


def test_framework_spans_are_kept_by_default(exporter: InMemorySpanExporter) -> None:
    spans = _spans(exporter, _app())
    assert set(spans) >= OPERATIONS
    server = _server(spans)
    endpoint = spans["fastapi.endpoint"]
    assert endpoint.parent is not None and endpoint.parent.span_id == server.context.span_id
    researcher = spans["researcher"]
    assert researcher.parent is not None
    assert researcher.parent.span_id == endpoint.context.span_id


def test_framework_spans_false_leaves_the_request_and_the_agents(
    exporter: InMemorySpanExporter,
) -> None:
    spans = _spans(exporter, _app(framework_spans=False))
    assert set(spans) == {"GET /items/{item_id}", "researcher", "audit"}
    server = _server(spans)
    assert server.parent is not None and server.parent.is_remote  # the caller's trace goes on
    assert server.context.trace_id == int(TRACEPARENT.split("-")[1], 16)
    assert (server.attributes or {})["agent.name"] == "researcher"
    assert (server.attributes or {})["http.route"] == "/items/{item_id}"
    for name in ("researcher", "audit"):  # no orphans: the agents hang off the request
        child = spans[name]
        assert child.parent is not None and child.parent.span_id == server.context.span_id
    assert (spans["researcher"].attributes or {})["plyra.span.kind"] == "AGENT"


def test_framework_spans_false_touches_only_its_own_app(exporter: InMemorySpanExporter) -> None:
    _spans(exporter, _app(framework_spans=False))
    exporter.clear()
    assert set(_spans(exporter, _app())) >= OPERATIONS


def test_collector_labels_framework_spans(exporter: InMemorySpanExporter) -> None:
    spans = _spans(exporter, _app())
    request = ExportTraceServiceRequest()
    request.ParseFromString(encode_spans(list(spans.values())).SerializeToString())
    normaliser = Normaliser(CollectorConfig(), Pricer())
    kinds = {record.name: record.kind for record in normaliser.request(request).spans}
    assert kinds == {
        "GET /items/{item_id}": "HTTP",
        "fastapi.dependencies": "FRAMEWORK",
        "fastapi.endpoint": "FRAMEWORK",
        "fastapi.serialization": "FRAMEWORK",
        "fastapi.background_task": "FRAMEWORK",
        "researcher": "AGENT",
        "audit": "TOOL",
    }
