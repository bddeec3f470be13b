"""inject/extract/continue: one trace across a hop, handoffs recorded, hostile input ignored."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace

import plyra_trace
from plyra_trace import _propagation


def test_round_trip_continues_trace_with_handoff(exporter):
    @plyra_trace.agent(name="researcher")
    def researcher(q):
        return q

    headers: dict[str, str] = {}

    @plyra_trace.agent(name="orchestrator")
    def orchestrator():
        plyra_trace.inject_context(
            headers, agent_name="orchestrator", handoff_reason="needs research"
        )

    with plyra_trace.session("s-9"), plyra_trace.user("u-9"):
        orchestrator()
    assert set(headers) >= {"traceparent", "baggage"}

    # The receiving side: no session in context, everything comes from the headers.
    ctx = plyra_trace.extract_context(headers)
    with plyra_trace.continue_trace(ctx):
        researcher("q")
        researcher("again")

    spans = exporter.get_finished_spans()
    sender = next(s for s in spans if s.name == "orchestrator")
    first, second = [s for s in spans if s.name == "researcher"]
    assert first.context.trace_id == sender.context.trace_id
    assert first.parent.span_id == sender.context.span_id
    assert first.attributes["agent.handoff.from"] == "orchestrator"
    assert first.attributes["agent.handoff.to"] == "researcher"
    assert first.attributes["agent.handoff.reason"] == "needs research"
    assert first.attributes["agent.handoff.protocol"] == "http"
    assert first.attributes["session.id"] == "s-9" and first.attributes["user.id"] == "u-9"
    assert "agent.handoff.from" not in second.attributes  # one handoff, recorded once
    assert second.attributes["session.id"] == "s-9"


def test_handoff_intent_and_current_agent_are_defaults(exporter):
    headers: dict[str, str] = {}

    @plyra_trace.agent(name="planner")
    def planner():
        with plyra_trace.handoff(to="writer", reason="draft it"):
            plyra_trace.inject_context(headers, protocol="queue")

    planner()
    ctx = plyra_trace.extract_context(headers)
    entries = baggage.get_all(ctx)
    assert entries["plyra.handoff.from"] == "planner"
    assert entries["plyra.handoff.to"] == "writer"
    assert entries["plyra.handoff.reason"] == "draft it"
    assert entries["plyra.handoff.protocol"] == "queue"
    with plyra_trace.continue_trace(ctx), plyra_trace.SpanBuilder("receive", kind="CHAIN"):
        pass
    received = next(s for s in exporter.get_finished_spans() if s.name == "receive")
    assert received.attributes["agent.handoff.to"] == "writer"
    assert received.attributes["agent.handoff.protocol"] == "queue"


def test_handoff_entries_do_not_leak_to_the_next_hop(exporter):
    outgoing: dict[str, str] = {}
    plyra_trace.inject_context(outgoing, agent_name="a", handoff_reason="r")
    onward: dict[str, str] = {}
    with plyra_trace.continue_trace(plyra_trace.extract_context(outgoing)):
        plyra_trace.inject_context(onward)
    entries = baggage.get_all(plyra_trace.extract_context(onward))
    assert "plyra.handoff.reason" not in entries
    assert "plyra.handoff.from" not in entries


@pytest.mark.parametrize(
    "carrier",
    [
        {"TraceParent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
        [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
        {b"traceparent": b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"HTTP_TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]},
    ],
)
def test_extract_accepts_carrier_shapes(carrier):
    span_context = trace.get_current_span(plyra_trace.extract_context(carrier)).get_span_context()
    assert span_context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span_context.is_remote


def test_inject_into_list_of_pairs(exporter):
    pairs: list[tuple[str, str]] = []
    with plyra_trace.SpanBuilder("x"):
        plyra_trace.inject_context(pairs)
    assert any(name == "traceparent" for name, _ in pairs)


@pytest.mark.parametrize(
    "carrier",
    [
        {"traceparent": "00-zzzz-yyyy-01"},
        {"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"},
        {"traceparent": "x" * 100_000},
        {"baggage": "=" * 10_000},
        {"baggage": ",".join(f"k{i}=v" for i in range(10_000))},
        None,
        42,
        [("only-one",)],
        {1: 2},
    ],
)
def test_hostile_input_starts_a_fresh_root(exporter, carrier):
    ctx = plyra_trace.extract_context(carrier)
    with plyra_trace.continue_trace(ctx), plyra_trace.SpanBuilder("fresh"):
        pass
    span = exporter.get_finished_spans()[-1]
    assert span.parent is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(
        st.one_of(st.sampled_from(["traceparent", "tracestate", "baggage", "b3"]), st.text()),
        st.one_of(st.text(), st.binary()),
        max_size=6,
    )
)
def test_extract_never_raises(carrier):
    ctx = plyra_trace.extract_context(carrier)
    with plyra_trace.continue_trace(ctx):
        pass


def test_b3_headers_when_configured(exporter):
    _propagation.configure(["tracecontext", "baggage", "b3multi"])
    try:
        headers: dict[str, str] = {}
        with plyra_trace.SpanBuilder("x"):
            plyra_trace.inject_context(headers)
        assert "x-b3-traceid" in headers and "traceparent" in headers
    finally:
        _propagation.configure()
    with pytest.raises(ValueError, match="unknown propagator"):
        _propagation.configure(["carrier-pigeon"])


def test_an_agent_queueing_work_for_itself_hands_nothing_off(exporter):
    @plyra_trace.agent(name="writer")
    def writer() -> dict[str, str]:
        return plyra_trace.inject_context({}, protocol="queue")

    headers = writer()
    with plyra_trace.continue_trace(headers, protocol="queue", receiver="writer"):
        with plyra_trace.SpanBuilder("follow-up"):
            pass
    with plyra_trace.continue_trace(headers, protocol="queue", receiver="editor"):
        with plyra_trace.SpanBuilder("handed-on"):
            pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert "agent.handoff.from" not in spans["follow-up"].attributes
    assert spans["handed-on"].attributes["agent.handoff.from"] == "writer"
    assert spans["handed-on"].attributes["agent.handoff.to"] == "editor"
