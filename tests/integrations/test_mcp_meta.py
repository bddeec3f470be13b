"""Requests with no ``_meta`` or a malformed one: an instrumented MCP server answers them exactly
as the same server without plyra_trace does, and still traces them (as new traces).

Both servers are real stdio subprocesses spoken to in raw JSON-RPC, so the test controls every
byte of ``_meta`` (mcp's own client would validate or rewrite it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integrations.mcp_raw import RawStdio
from tests.otlp_receiver import OTLPReceiver

pytestmark = pytest.mark.timeout(60)

SERVICE = "tools-raw"
TRACE_ID, SPAN_ID = "a1" * 16, "b2" * 8
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"
METAS: dict[str, Any] = {
    "absent": None,
    "empty": {},
    "a string": "garbage",
    "a list": ["traceparent", VALID],
    "nonsense traceparent": {"traceparent": "nonsense"},
    "traceparent not a string": {"traceparent": ["x"], "tracestate": 7},
    "truncated traceparent": {"traceparent": VALID[:30]},
    "malformed baggage": {"baggage": "%%%,,;;==,session.id"},
    "huge baggage": {"traceparent": VALID, "baggage": "session.id=" + "x" * 20_000},
    "many baggage entries": {"baggage": ",".join(f"k{i}=v{i}" for i in range(2_000))},
    "handoff without trace": {"baggage": "plyra.handoff.from=ghost,session.id=s-1"},
}


@pytest.fixture(scope="module")
def otlp() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def servers(otlp: OTLPReceiver) -> Iterator[tuple[RawStdio, RawStdio]]:
    """The instrumented server (exporting to ``otlp``) and the plain one, initialized."""
    instrumented, plain = RawStdio("stdio", otlp.url, SERVICE), RawStdio("stdio-plain")
    try:
        assert instrumented.initialize() == plain.initialize()
        yield instrumented, plain
    finally:
        instrumented.close()
        plain.close()


def both(servers: tuple[RawStdio, RawStdio], method: str, params: Any) -> dict[str, Any]:
    """Send the same request to both servers; their responses must be identical."""
    instrumented, plain = servers
    answer = instrumented.request(method, params)
    assert answer == plain.request(method, params), params
    return answer


def with_meta(params: dict[str, Any], meta: Any) -> dict[str, Any]:
    return params if meta is None else {**params, "_meta": meta}


@pytest.mark.parametrize("case", list(METAS))
def test_tool_call_answers_exactly_as_without_plyra(
    servers: tuple[RawStdio, RawStdio], case: str
) -> None:
    meta = METAS[case]
    answer = both(servers, "tools/call", with_meta({"name": "echo_meta", "arguments": {}}, meta))
    if isinstance(meta, dict):  # a well-formed object reaches the tool untouched
        assert answer["result"]["structuredContent"] == meta
    search = both(
        servers, "tools/call", with_meta({"name": "search", "arguments": {"query": case}}, meta)
    )
    if isinstance(meta, dict) or meta is None:
        assert search["result"]["content"][0]["text"] == f"results for {case}"
    else:  # mcp itself rejects a non-object _meta, with or without plyra
        assert search["error"]["code"] == -32602


@pytest.mark.parametrize("case", ["a string", "nonsense traceparent", "huge baggage"])
def test_resource_and_prompt_answer_exactly_as_without_plyra(
    servers: tuple[RawStdio, RawStdio], case: str
) -> None:
    meta = METAS[case]
    both(servers, "resources/read", with_meta({"uri": "notes://voles"}, meta))
    both(
        servers, "prompts/get", with_meta({"name": "summarize", "arguments": {"topic": "v"}}, meta)
    )


def test_malformed_meta_starts_a_new_trace_and_valid_context_is_continued(
    servers: tuple[RawStdio, RawStdio], otlp: OTLPReceiver
) -> None:
    instrumented, _ = servers
    marks = {}
    for case in ("nonsense traceparent", "huge baggage", "handoff without trace"):
        query = f"trace-check {case}"
        instrumented.request(
            "tools/call", {"name": "search", "arguments": {"query": query}, "_meta": METAS[case]}
        )
        marks[case] = f'{{"query": "{query}"}}'

    def span_for(spans: list[Any], case: str) -> Any:
        found = [
            s
            for s in spans
            if s.service == SERVICE
            and s.name == "tools/call search"
            and s.attributes.get("input.value") == marks[case]
        ]
        return found[0] if len(found) == 1 else None

    spans = otlp.wait_for(lambda spans: all(span_for(spans, case) for case in marks))
    nonsense = span_for(spans, "nonsense traceparent")
    assert nonsense.parent_id is None and nonsense.trace_id != TRACE_ID
    assert nonsense.attributes["plyra.span.kind"] == "TOOL"
    huge = span_for(spans, "huge baggage")
    assert (huge.trace_id, huge.parent_id) == (TRACE_ID, SPAN_ID)
    assert "session.id" not in huge.attributes  # the oversized baggage is dropped, not truncated
    ghost = span_for(spans, "handoff without trace")
    assert ghost.parent_id is None
    assert ghost.attributes["session.id"] == "s-1"
    assert ghost.attributes["agent.handoff.from"] == "ghost"
    for span in (nonsense, huge, ghost):
        assert span.status_code != 2
