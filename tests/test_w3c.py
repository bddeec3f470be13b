"""W3C Trace Context and Baggage through every carrier shape the integrations hand over.

Each integration passes its native carrier to ``extract_context`` (ASGI scope headers, gRPC
metadata, WSGI environ, Celery/kombu headers, MCP ``_meta``) or lets a library call the global
propagator with its own getter (FastAPI); every shape must give the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from starlette.datastructures import Headers

import plyra_trace
from plyra_trace import _w3c
from tests.w3c_cases import CASES, TRACE_ID, Case


def _grouped(case: Case) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in case.headers:
        grouped.setdefault(name.lower(), []).append(value)
    return grouped


CARRIERS: dict[str, Callable[[Case], Any]] = {
    # ASGI scope headers (uvicorn hands repeated lines as separate pairs)
    "asgi": lambda case: [(n.lower().encode(), v.encode("latin-1")) for n, v in case.headers],
    # any list of pairs, names as sent
    "pairs": lambda case: list(case.headers),
    # gRPC invocation metadata: a tuple of (key, value), keys lowercase
    "grpc": lambda case: tuple((n.lower(), v) for n, v in case.headers),
    # a mapping of lists (requests' and aiohttp's multi-dicts look like this)
    "mapping-of-lists": _grouped,
    # WSGI environ: the server joined repeated lines with "," (RFC 9110 section 5.3)
    "wsgi": lambda case: {
        "HTTP_" + name.upper().replace("-", "_"): ",".join(values)
        for name, values in _grouped(case).items()
    },
}
# Celery and kombu message headers and MCP ``_meta`` are plain dicts of strings: one value a name.
SINGLE_VALUED = {"celery-kombu-mcp-meta": lambda case: dict(case.headers)}


def _forwarded(ctx: Any) -> dict[str, str]:
    """The headers the next hop receives from a span continuing ``ctx``."""
    outgoing: dict[str, str] = {}
    with plyra_trace.continue_trace(ctx), plyra_trace.SpanBuilder("hop"):
        plyra_trace.inject_context(outgoing)
    return outgoing


def _assert_forwarded(case: Case, outgoing: dict[str, str]) -> None:
    version, trace_id, parent_id, _flags = outgoing["traceparent"].split("-")
    assert version == "00"
    assert (trace_id == TRACE_ID) is case.continued, outgoing
    assert parent_id != "00f067aa0ba902b7"
    assert outgoing.get("tracestate") == case.tracestate


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_carrier_reads_trace_context_to_the_letter(exporter, case: Case, carrier: str):
    _assert_forwarded(case, _forwarded(plyra_trace.extract_context(CARRIERS[carrier](case))))


SINGLE = [case for case in CASES if not case.repeats_a_name]


@pytest.mark.parametrize("case", SINGLE, ids=[case.id for case in SINGLE])
def test_single_valued_carriers(exporter, case: Case):
    carrier = SINGLE_VALUED["celery-kombu-mcp-meta"](case)
    _assert_forwarded(case, _forwarded(plyra_trace.extract_context(carrier)))


class _StarletteGetter:
    """The getter shape FastAPI's own tracing passes to the global propagator."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        return carrier.getlist(key) or None

    def keys(self, carrier: Headers) -> list[str]:
        return list(carrier.keys())


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_libraries_using_the_global_propagator_read_the_same(exporter, case: Case):
    raw = [(n.lower().encode(), v.encode("latin-1")) for n, v in case.headers]
    ctx = propagate.extract(Headers(raw=raw), getter=_StarletteGetter())  # type: ignore[arg-type]
    _assert_forwarded(case, _forwarded(ctx))


def test_the_global_propagator_is_left_alone_when_the_application_chose_one():
    from opentelemetry.propagators.b3 import B3MultiFormat

    own = B3MultiFormat()
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(own)
    try:
        plyra_trace.init("own-propagator", console=False).shutdown()
        assert propagate.get_global_textmap() is own
    finally:
        propagate.set_global_textmap(previous)


# --- tracestate as a value -------------------------------------------------------------------


def test_tracestate_mutations_follow_the_spec():
    state = _w3c.parse_tracestate(["a=1,b@x=2"])
    assert state.add("c", "3").to_header() == "c=3,a=1,b@x=2"  # new entries go first
    assert state.add("a", "9") is state  # add never replaces
    assert state.update("b@x", "7").to_header() == "b@x=7,a=1"  # updated entries move first
    assert state.delete("a").to_header() == "b@x=2"
    assert state.add("BAD", "1") is state
    full = _w3c.parse_tracestate([",".join(f"k{i}=v" for i in range(32))])
    grown = full.add("new", "1")
    assert len(grown) == 32 and next(iter(grown)) == "new" and "k31" not in grown  # right-most goes


def test_a_span_continuing_a_trace_keeps_the_received_tracestate(exporter):
    ctx = plyra_trace.extract_context(
        [("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"), ("tracestate", "x@y=1")]
    )
    with plyra_trace.continue_trace(ctx), plyra_trace.SpanBuilder("child"):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.context.trace_state.to_header() == "x@y=1"


# --- baggage ---------------------------------------------------------------------------------

_TP = ("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01")


def test_repeated_baggage_lines_are_combined(exporter):
    ctx = plyra_trace.extract_context(
        [_TP, ("baggage", "session.id=s-1"), ("baggage", ""), ("baggage", " user.id=u-1 , a=b")]
    )
    assert baggage.get_all(ctx) == {"session.id": "s-1", "user.id": "u-1", "a": "b"}


def test_baggage_limits_keep_whole_members_and_never_raise(exporter):
    many = ",".join(f"k{i}=v" for i in range(400))
    entries = baggage.get_all(plyra_trace.extract_context([_TP, ("baggage", many)]))
    assert len(entries) == _w3c.MAX_BAGGAGE_MEMBERS and entries["k0"] == "v"

    oversized = "big=" + "x" * 5000
    entries = baggage.get_all(
        plyra_trace.extract_context([_TP, ("baggage", f"a=1,{oversized},b=2")])
    )
    assert entries == {"a": "1", "b": "2"}  # the member over 4096 bytes alone is dropped

    wide = [("baggage", f"w{i}=" + "y" * 1000) for i in range(20)]
    entries = baggage.get_all(plyra_trace.extract_context([_TP, *wide]))
    assert 0 < len(entries) < 20
    assert all(len(value) == 1000 for value in entries.values())  # no member cut short
    assert sum(len(k) + len(v) + 1 for k, v in entries.items()) + len(entries) - 1 <= 8192


def test_our_entries_survive_a_callers_full_baggage_and_foreign_handoffs_do_not(exporter):
    foreign = ",".join(
        ["plyra.handoff.from=intruder", "plyra.handoff.reason=spoof"]
        + [f"f{i:03d}=" + "z" * 40 for i in range(176)]
    )
    assert len(foreign) <= _w3c.MAX_BAGGAGE_BYTES  # a full but lawful baggage
    received = plyra_trace.extract_context([_TP, ("baggage", foreign)])
    assert len(baggage.get_all(received)) == 178
    onward: dict[str, str] = {}

    @plyra_trace.agent(name="writer")
    def writer() -> None:
        with plyra_trace.session("s-7"), plyra_trace.handoff(to="reader", reason="review"):
            plyra_trace.inject_context(onward)

    with plyra_trace.continue_trace(received):
        writer()
    header = onward["baggage"]
    assert len(header.encode()) <= _w3c.MAX_BAGGAGE_BYTES
    assert header.count(",") + 1 <= _w3c.MAX_BAGGAGE_MEMBERS
    entries = baggage.get_all(plyra_trace.extract_context({"baggage": header}))
    assert entries["session.id"] == "s-7"
    assert entries["plyra.handoff.from"] == "writer"
    assert entries["plyra.handoff.to"] == "reader"
    assert entries["plyra.handoff.reason"] == "review"
    assert "intruder" not in header and "spoof" not in header
    assert "f000" in entries  # foreign entries still travel, after ours, within the limits
    assert "f175" not in entries  # the last ones make room for ours

    plain: dict[str, str] = {}
    with plyra_trace.continue_trace(received):
        plyra_trace.inject_context(plain)  # no agent, no intent: no handoff at all
    assert "plyra.handoff" not in plain.get("baggage", "")


def test_hostile_repeated_lines_are_bounded(exporter):
    lines = [("tracestate", "a=1," + " ," * 4000)] * 300 + [_TP]
    ctx = plyra_trace.extract_context(lines)
    span_context = trace.get_current_span(ctx).get_span_context()
    # past 256 entries the carrier is cut, so the traceparent at the end is never read
    assert not span_context.is_valid


_LINE = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["a=1", "", " , ", "k@v=x", "@bad=1", "A=1", "b=2,,c=3", "x=" + "v" * 300]),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.sampled_from(["tracestate", "baggage", "TraceState"]), _LINE), max_size=40
    )
)
def test_any_repeated_lines_give_a_lawful_context_or_none(exporter, lines):
    ctx = plyra_trace.extract_context([_TP, *lines])
    state = trace.get_current_span(ctx).get_span_context().trace_state
    assert len(state) <= _w3c.MAX_TRACESTATE_MEMBERS
    assert all(_w3c.valid_tracestate_member(key, state[key]) for key in state)
    assert len(baggage.get_all(ctx)) <= _w3c.MAX_BAGGAGE_MEMBERS
