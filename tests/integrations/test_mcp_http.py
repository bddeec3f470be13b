"""MCP over streamable HTTP: the tool server runs under uvicorn behind ``PlyraMiddleware`` in its
own process (``tests.integrations.mcp_server http``); this test process is the agent. Both export
OTLP to one local receiver.

The shape per call: ``MCP send tools/call x`` (CLIENT, mcp) -> ``POST /mcp`` (SERVER, the HTTP
transport span from PlyraMiddleware) -> ``tools/call x`` (SERVER, mcp's span enriched as TOOL).
One TOOL span per call, the handoff recorded on it only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

import plyra_trace
from plyra_trace.integrations.mcp import instrument_client, instrument_http_client
from tests.integrations.mcp_raw import RawHttp, server_env
from tests.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.processes import python_service

pytestmark = pytest.mark.timeout(90)

SERVICE = "tools-http"
SERVER, CLIENT = 2, 3  # OTLP span kinds


@pytest.fixture(scope="module")
def otlp() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def mcp_url(otlp: OTLPReceiver) -> Iterator[str]:
    """The instrumented server under uvicorn in a subprocess; stopped (SIGTERM, then kill)."""
    env = server_env(otlp.url, SERVICE)
    with python_service("tests.integrations.mcp_server", "http", env=env) as port:
        yield f"http://127.0.0.1:{port}/mcp"


def run_agent(endpoint: str, body: Callable[[], Awaitable[Any]]) -> Any:
    handle = plyra_trace.init(
        project="mcp-e2e", service_name="agent-http", endpoint=endpoint, batch=False, console=False
    )
    try:
        return asyncio.run(body())
    finally:
        handle.shutdown()


def one(spans: list[ReceivedSpan], name: str, **attributes: Any) -> ReceivedSpan:
    found = [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s.name for s in spans]}"
    return found[0]


def tool_spans(spans: list[ReceivedSpan], query: str) -> list[ReceivedSpan]:
    """The server's TOOL spans for a search with ``query``."""
    mark = json.dumps({"query": query})
    return [
        s
        for s in spans
        if s.service == SERVICE
        and s.attributes.get("plyra.span.kind") == "TOOL"
        and s.attributes.get("input.value") == mark
    ]


def test_traced_http_client_gives_one_trace_with_the_transport_span_in_between(
    otlp: OTLPReceiver, mcp_url: str
) -> None:
    requests: list[str] = []

    async def count(response: httpx2.Response) -> None:
        requests.append(f"{response.request.method} {response.status_code}")

    @plyra_trace.agent(name="researcher")
    async def research() -> list[Any]:
        http = instrument_http_client(httpx2.AsyncClient(event_hooks={"response": [count]}))
        async with http, Client(streamable_http_client(mcp_url, http_client=http)) as client:
            instrument_client(client)
            with plyra_trace.session("conv-http"), plyra_trace.user("ada"):
                with plyra_trace.handoff(to="tools", reason="find sources"):
                    found = await client.call_tool("search", {"query": "http-traced"})
                refused = await client.call_tool("refuse", {"reason": "quota"})
        return [found, refused]

    found, refused = run_agent(otlp.url, research)
    assert found.content[0].text == "results for http-traced" and refused.is_error

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = {s.name for s in spans}
        ended = len([s for s in spans if s.service == SERVICE and s.kind == SERVER]) >= 2 * len(
            requests
        )
        return "researcher" in names and bool(tool_spans(spans, "http-traced")) and ended

    spans = otlp.wait_for(complete)
    agent = one(spans, "researcher")
    ours = [s for s in spans if s.trace_id == agent.trace_id]
    http_spans = [s for s in ours if s.service == SERVICE and s.name.endswith(" /mcp")]
    assert len(http_spans) == len(requests)  # every HTTP request of the session joined the trace
    for name, query_or_none in (("search", "http-traced"), ("refuse", None)):
        client = one(ours, f"MCP send tools/call {name}")
        server = one(ours, f"tools/call {name}")
        transport = next(s for s in ours if s.span_id == server.parent_id)
        assert (client.kind, server.kind, transport.kind) == (CLIENT, SERVER, SERVER)
        assert transport.name == "POST /mcp" and transport.service == SERVICE
        assert transport.parent_id == client.span_id
        assert client.parent_id == agent.span_id
        assert [s for s in ours if s.parent_id == transport.span_id] == [server]
        assert server.attributes["plyra.span.kind"] == "TOOL"
        assert server.attributes["agent.handoff.from"] == "researcher"
        assert not any(k.startswith("agent.handoff.") for k in transport.attributes)
        assert transport.attributes["session.id"] == server.attributes["session.id"] == "conv-http"
        if query_or_none is not None:
            assert len(tool_spans(spans, query_or_none)) == 1
    search = one(ours, "tools/call search").attributes
    assert search["agent.handoff.reason"] == "find sources"
    rank = one(ours, "chat ranker-1")
    assert rank.parent_id == one(ours, "tools/call search").span_id
    assert rank.attributes["user.id"] == "ada"
    assert len([s for s in ours if s.attributes.get("plyra.span.kind") == "TOOL"]) == 2


def test_mcp_default_http_client_keeps_the_tool_span_in_the_callers_trace(
    otlp: OTLPReceiver, mcp_url: str
) -> None:
    """mcp's own HTTP client sends context in ``_meta`` only: the tool span is still the client
    span's child; the HTTP span (a root, with no context in the headers) links to the caller."""

    @plyra_trace.agent(name="planner")
    async def plan() -> Any:
        async with Client(mcp_url) as client:
            instrument_client(client)
            return await client.call_tool("search", {"query": "http-default"})

    assert run_agent(otlp.url, plan).content[0].text == "results for http-default"
    spans = otlp.wait_for(
        lambda spans: (
            bool(tool_spans(spans, "http-default")) and "planner" in {s.name for s in spans}
        )
    )
    (tool,) = tool_spans(spans, "http-default")
    client = next(s for s in spans if s.span_id == tool.parent_id)
    assert client.name == "MCP send tools/call search" and client.kind == CLIENT
    assert client.trace_id == one(spans, "planner").trace_id
    assert tool.attributes["agent.handoff.from"] == "planner"
    linked = [s for s in spans if (client.trace_id, client.span_id) in s.links]
    assert [(s.name, s.kind, s.parent_id) for s in linked] == [("POST /mcp", SERVER, None)]


def test_client_without_any_context_gets_the_tool_span_under_the_http_span(
    otlp: OTLPReceiver, mcp_url: str
) -> None:
    """A third-party client (no OpenTelemetry, no ``_meta``): one trace per request, rooted at
    the HTTP span."""
    raw = RawHttp(mcp_url)
    try:
        raw.initialize()
        answer = raw.request("tools/call", {"name": "search", "arguments": {"query": "raw-http"}})
    finally:
        raw.close()
    assert answer["result"]["content"][0]["text"] == "results for raw-http"
    spans = otlp.wait_for(lambda spans: bool(tool_spans(spans, "raw-http")))
    (tool,) = tool_spans(spans, "raw-http")
    transport = next(s for s in spans if s.span_id == tool.parent_id)
    assert (transport.name, transport.kind, transport.parent_id) == ("POST /mcp", SERVER, None)
    assert transport.trace_id == tool.trace_id
    assert not any(k.startswith("agent.handoff.") for k in tool.attributes)
