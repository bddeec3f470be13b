"""Ingest from real exporters (HTTP protobuf, gRPC, our SDK), OTLP JSON, gzip, partial success."""

from __future__ import annotations

import gzip
import json

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

import plyra_trace
from tests.collector.conftest import (
    make_request,
    make_span,
    sid,
    start_collector,
    stop_collector,
    tid,
)


def _provider(exporter, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def test_plain_otel_sdk_over_http_protobuf_builds_a_tree(collector):
    provider = _provider(OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces"), "plain")
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("root", attributes={"agent.name": "planner"}) as root:
        with tracer.start_as_current_span("step-1"):
            with tracer.start_as_current_span("leaf") as leaf:
                leaf.set_status(Status(StatusCode.ERROR, "boom"))
        with tracer.start_as_current_span("step-2"):
            pass
    provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")

    trace = collector.trace(trace_id)
    assert trace["root_name"] == "root"
    assert trace["complete"] is True
    assert trace["span_count"] == 4
    assert trace["error_count"] == 1
    assert trace["status"] == "error"
    assert trace["services"] == ["plain"]
    assert trace["agents"] == ["planner"]
    names = [(s["name"], s["depth"], s["order"]) for s in trace["spans"]]
    assert names == [("root", 0, 0), ("step-1", 1, 1), ("leaf", 2, 2), ("step-2", 1, 3)]
    leaf = trace["spans"][2]
    assert leaf["status_message"] == "boom"
    assert leaf["agent"] == "planner"  # attributed to the nearest ancestor agent
    assert leaf["own_agent"] is None


def test_grpc_exporter(tmp_path):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )

    running = start_collector(tmp_path, grpc=True)
    try:
        exporter = GrpcExporter(endpoint=f"127.0.0.1:{running.grpc_port}", insecure=True)
        provider = _provider(exporter, "grpc-svc")
        with provider.get_tracer("t").start_as_current_span("over-grpc") as span:
            pass
        provider.shutdown()
        trace = running.trace(format(span.get_span_context().trace_id, "032x"))
        assert trace["root_name"] == "over-grpc"
        assert trace["services"] == ["grpc-svc"]
    finally:
        stop_collector(running)


def test_plyra_sdk_export_keeps_its_cost(collector):
    handle = plyra_trace.init("sdk-project", endpoint=collector.url, batch=False)

    @plyra_trace.llm(model="gpt-4o", provider="openai")
    def call_model() -> dict:
        return {"usage": {"prompt_tokens": 1000, "completion_tokens": 100}}

    @plyra_trace.agent(name="writer")
    def run() -> None:
        with plyra_trace.session("sess-sdk"):
            call_model()

    run()
    handle.shutdown()
    page = collector.get("/api/v1/traces", project="sdk-project")
    assert len(page["items"]) == 1
    summary = page["items"][0]
    assert summary["agents"] == ["writer"]
    trace = collector.trace(summary["trace_id"])
    llm = next(s for s in trace["spans"] if s["kind"] == "LLM")
    assert llm["model"] == "gpt-4o"
    assert llm["input_tokens"] == 1000
    assert llm["cost_source"] == "span"
    assert llm["cost"] == pytest.approx(llm["attributes"]["llm.cost.total"])
    assert llm["agent"] == "writer"
    assert summary["cost"] == pytest.approx(llm["cost"])


def test_otlp_json_with_hex_ids_and_gzip(collector):
    trace_hex = "5b8efff798038103d269b633813fc60c"
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_hex,
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "eee19b7ec3c1b173",
                                "name": "child",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000500000000",
                                "attributes": [
                                    {"key": "gen_ai.request.model", "value": {"stringValue": "m"}},
                                    {
                                        "key": "gen_ai.usage.input_tokens",
                                        "value": {"intValue": "7"},
                                    },
                                ],
                            },
                            {
                                "traceId": trace_hex,
                                "spanId": "eee19b7ec3c1b173",
                                "name": "parent",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                            },
                        ]
                    }
                ],
            }
        ]
    }
    raw = json.dumps(body).encode()
    response = collector.api.post(
        "/v1/traces",
        content=gzip.compress(raw),
        headers={"content-type": "application/json; charset=utf-8", "content-encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    trace = collector.trace(trace_hex)
    assert trace["root_name"] == "parent"
    assert trace["duration_ns"] == 1_000_000_000
    child = trace["spans"][1]
    assert child["span_id"] == "eee19b7ec3c1b174"
    assert child["parent_id"] == "eee19b7ec3c1b173"
    assert child["input_tokens"] == 7
    assert child["kind"] == "LLM"


def test_gzip_protobuf(collector):
    reply = collector.post_request(make_request([make_span(77, 1, "zipped")]), gzipped=True)
    assert not reply.HasField("partial_success")
    assert collector.trace(tid(77))["root_name"] == "zipped"


def test_partial_success_for_bad_ids_and_span_limit(tmp_path):
    running = start_collector(tmp_path, max_spans_per_request=3)
    try:
        bad = make_span(5, 9, "bad-ids")
        bad.trace_id = b"\x01\x02\x03"
        spans = [make_span(5, i, f"s{i}") for i in range(1, 6)] + [bad]
        reply = running.post_request(make_request(spans))
        assert reply.partial_success.rejected_spans == 3
        assert "16-byte trace id" in reply.partial_success.error_message
        assert "3-span request limit" in reply.partial_success.error_message
        assert running.trace(tid(5))["span_count"] == 3
    finally:
        stop_collector(running)


def test_openllmetry_style_spans_are_normalised(collector):
    collector.send(
        make_span(
            31,
            1,
            "research.agent",
            traceloop__span__kind="agent",
            traceloop__entity__name="researcher",
            traceloop__entity__input='{"q": "why"}',
            traceloop__association__properties__session_id="ll-session",
        ),
        make_span(
            31,
            2,
            "openai.chat",
            parent=1,
            llm__request__type="chat",
            gen_ai__system="openai",
            gen_ai__request__model="gpt-4o-mini",
            llm__usage__prompt_tokens=200,
            llm__usage__completion_tokens=20,
        ),
        service="openllmetry-svc",
    )
    trace = collector.trace(tid(31))
    agent_span, llm = trace["spans"]
    assert agent_span["kind"] == "AGENT"
    assert agent_span["own_agent"] == "researcher"
    assert trace["session_id"] == "ll-session"
    assert llm["kind"] == "LLM"
    assert llm["provider"] == "openai"
    assert (llm["input_tokens"], llm["output_tokens"], llm["total_tokens"]) == (200, 20, 220)
    assert llm["cost"] is not None and llm["cost"] > 0
    assert llm["agent"] == "researcher"
    detail = collector.get(f"/api/v1/traces/{tid(31)}/spans/{sid(1)}")
    assert detail["input_value"] == '{"q": "why"}'
    assert "traceloop.entity.input" not in detail["attributes"]


def test_otel_genai_and_openinference_spans_are_normalised(collector):
    collector.send(
        make_span(
            32,
            1,
            "invoke_agent support",
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="support",
            gen_ai__conversation__id="conv-1",
        ),
        make_span(
            32,
            2,
            "chat",
            parent=1,
            gen_ai__operation__name="chat",
            gen_ai__provider__name="anthropic",
            gen_ai__request__model="claude-sonnet-4-5",
            gen_ai__usage__input_tokens=300,
            gen_ai__usage__output_tokens=30,
        ),
        make_span(
            32,
            3,
            "retrieve",
            parent=1,
            openinference__span__kind="RETRIEVER",
            session__id="oi-session",
            user__id="u-7",
            input__value="the question",
            output__value="the answer",
        ),
    )
    trace = collector.trace(tid(32))
    kinds = {s["name"]: s["kind"] for s in trace["spans"]}
    assert kinds == {"invoke_agent support": "AGENT", "chat": "LLM", "retrieve": "RETRIEVER"}
    assert trace["agents"] == ["support"]
    assert trace["session_id"] == "conv-1"
    assert trace["user_id"] == "u-7"
    chat = next(s for s in trace["spans"] if s["name"] == "chat")
    assert chat["provider"] == "anthropic"
    assert chat["cost"] is not None
    retrieve = collector.get(f"/api/v1/traces/{tid(32)}/spans/{sid(3)}")
    assert (retrieve["input_value"], retrieve["output_value"]) == ("the question", "the answer")


def test_transport_spans_are_shown_as_their_transport_not_unknown(collector):
    collector.send(
        make_span(33, 1, "POST /research", http__request__method="POST"),
        make_span(33, 2, "publish draft", parent=1, messaging__system="celery"),
        make_span(33, 3, "MCP send tools/call search", parent=1, mcp__method__name="tools/call"),
        make_span(33, 4, "SELECT", parent=1, db__system__name="sqlite"),
        make_span(
            33,
            5,
            "tools/call search",
            parent=3,
            mcp__method__name="tools/call",
            plyra__span__kind="TOOL",
        ),
        make_span(33, 6, "step", parent=1),
    )
    kinds = {s["name"]: s["kind"] for s in collector.trace(tid(33))["spans"]}
    assert kinds == {
        "POST /research": "HTTP",
        "publish draft": "MESSAGING",
        "MCP send tools/call search": "RPC",
        "SELECT": "DATABASE",
        "tools/call search": "TOOL",  # an agent kind wins over the transport
        "step": "UNKNOWN",
    }
