"""MCP over stdio across two processes: this test process is the agent (the client), the tool
server is ``tests.integrations.mcp_server`` started by mcp as a stdio subprocess; both export
OTLP to one local receiver. mcp's ``stdio_client`` owns the child: leaving ``Client`` closes its
stdin and kills it if it does not exit."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

import plyra_trace
from plyra_trace.integrations.mcp import instrument_client
from tests.integrations.mcp_raw import ROOT, server_env
from tests.otlp_receiver import OTLPReceiver, ReceivedSpan

pytestmark = pytest.mark.timeout(90)

SERVER, CLIENT = 2, 3  # OTLP span kinds
ERROR = 2  # OTLP status code
CALLS = {  # what the scenario calls -> (client span name, server span name)
    "search": ("MCP send tools/call search", "tools/call search"),
    "refuse": ("MCP send tools/call refuse", "tools/call refuse"),
    "crash": ("MCP send tools/call crash", "tools/call crash"),
    "resource": ("MCP send resources/read", "resources/read"),
    "prompt": ("MCP send prompts/get summarize", "prompts/get summarize"),
}


@pytest.fixture(scope="module")
def otlp() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


def stdio_server(mode: str, endpoint: str, service: str) -> StdioServerParameters:
    """mcp starts the child with only the environment given here (plus a safe default set)."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "tests.integrations.mcp_server", mode],
        env=server_env(endpoint, service),
        cwd=ROOT,
    )


@contextmanager
def tracing(endpoint: str, service: str) -> Iterator[None]:
    handle = plyra_trace.init(
        project="mcp-e2e", service_name=service, endpoint=endpoint, batch=False, console=False
    )
    try:
        yield
    finally:
        handle.shutdown()


def run_agent(
    endpoint: str, service: str, body: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    with tracing(endpoint, service):
        return asyncio.run(body())


def of(spans: list[ReceivedSpan], *services: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.service in services]


def trace_of(spans: list[ReceivedSpan], agent: str, server: str) -> list[ReceivedSpan]:
    """The spans of the trace rooted at the ``agent`` span, plus every span ``server`` sent.

    The client side is told apart by trace, not by service name: mcp's spans use OpenTelemetry's
    global provider, whose resource is that of the first ``init()`` in this test process.
    """
    roots = {s.trace_id for s in spans if s.name == agent and s.parent_id is None}
    return [s for s in spans if s.trace_id in roots or s.service == server]


def wait_for_trace(
    otlp: OTLPReceiver, agent: str, server: str, names: set[str]
) -> list[ReceivedSpan]:
    return trace_of(
        otlp.wait_for(lambda spans: names <= {s.name for s in trace_of(spans, agent, server)}),
        agent,
        server,
    )


def one(spans: list[ReceivedSpan], name: str, kind: int | None = None) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and (kind is None or s.kind == kind)]
    assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s.name for s in spans]}"
    return found[0]


def wire(result: Any) -> dict[str, Any]:
    """A result as the client application sees it."""
    return dict(result.model_dump(mode="json", exclude={"meta"}))


@dataclass
class Run:
    results: dict[str, Any]
    spans: list[ReceivedSpan]


@pytest.fixture(scope="module")
def scenario(otlp: OTLPReceiver) -> Run:
    """An instrumented agent calls three tools, a resource and a prompt on an instrumented
    server."""
    params = stdio_server("stdio", otlp.url, "tools-stdio")

    @plyra_trace.agent(name="researcher")
    async def research() -> dict[str, Any]:
        results: dict[str, Any] = {}
        async with Client(params) as client:
            instrument_client(client)
            with plyra_trace.session("conv-42"), plyra_trace.user("ada"):
                with plyra_trace.handoff(to="tools", reason="find sources"):
                    results["search"] = await client.call_tool("search", {"query": "otters"})
                with plyra_trace.handoff(reason="check the quota"):
                    results["refuse"] = await client.call_tool("refuse", {"reason": "quota"})
                results["crash"] = await client.call_tool("crash", {"url": "https://x.test/a"})
                results["resource"] = await client.read_resource("notes://otters")
                results["prompt"] = await client.get_prompt("summarize", {"topic": "otters"})
        return results

    results = run_agent(otlp.url, "agent-stdio", research)
    expected = {name for pair in CALLS.values() for name in pair} | {"chat ranker-1", "researcher"}
    return Run(results, wait_for_trace(otlp, "researcher", "tools-stdio", expected))


def test_each_call_is_one_client_and_one_server_span_in_one_trace(scenario: Run) -> None:
    agent = one(scenario.spans, "researcher")
    assert {s.trace_id for s in scenario.spans} == {agent.trace_id}
    for client_name, server_name in CALLS.values():
        client = one(scenario.spans, client_name)
        server = one(scenario.spans, server_name)
        assert client.kind == CLIENT and client.service != "tools-stdio"
        assert (server.kind, server.service) == (SERVER, "tools-stdio")
        assert client.parent_id == agent.span_id
        assert server.parent_id == client.span_id
    kinds = [s.attributes.get("plyra.span.kind") for s in of(scenario.spans, "tools-stdio")]
    assert kinds.count("TOOL") == 3  # mcp's spans enriched, never a second span


def test_tool_span_has_kind_name_input_output_and_handoff(scenario: Run) -> None:
    search = one(scenario.spans, "tools/call search").attributes
    assert search["plyra.span.kind"] == "TOOL"
    assert search["openinference.span.kind"] == "TOOL"
    assert search["tool.name"] == search["gen_ai.tool.name"] == "search"
    assert search["agent.name"] == "tools"
    assert json.loads(search["input.value"]) == {"query": "otters"}
    assert search["output.value"] == "results for otters"
    assert search["agent.handoff.from"] == "researcher"
    assert search["agent.handoff.to"] == "tools"
    assert search["agent.handoff.protocol"] == "mcp"
    assert search["agent.handoff.reason"] == "find sources"
    refuse = one(scenario.spans, "tools/call refuse").attributes
    assert refuse["agent.handoff.reason"] == "check the quota"
    assert refuse["agent.handoff.to"] == "tools"  # the server's agent_name: the caller was silent
    crash = one(scenario.spans, "tools/call crash").attributes
    assert crash["agent.handoff.from"] == "researcher"
    assert "agent.handoff.reason" not in crash  # intent does not leak from an earlier block


def test_server_spans_and_tool_body_spans_carry_the_callers_session_and_user(
    scenario: Run,
) -> None:
    tool_side = of(scenario.spans, "tools-stdio")
    in_session = [s for s in tool_side if s.name != "server/discover"]  # sent on connecting
    assert len(in_session) >= 7
    for span in in_session:
        assert span.attributes.get("session.id") == "conv-42", span.name
        assert span.attributes.get("user.id") == "ada", span.name
    rank = one(tool_side, "chat ranker-1")
    assert rank.attributes["plyra.span.kind"] == "LLM"
    assert rank.parent_id == one(tool_side, "tools/call search").span_id


def test_is_error_result_sets_error_with_the_tools_own_text(scenario: Run) -> None:
    text = scenario.results["refuse"].content[0].text
    assert scenario.results["refuse"].is_error and "refused: quota" in text
    refuse = one(scenario.spans, "tools/call refuse")
    assert refuse.status_code == ERROR
    assert refuse.status_message == text
    assert refuse.attributes["plyra.error.message"] == text
    assert refuse.attributes["output.value"] == text
    assert one(scenario.spans, "tools/call search").status_code != ERROR


def test_tool_exception_is_recorded_and_the_client_gets_mcps_own_answer(scenario: Run) -> None:
    crashed = scenario.results["crash"]
    assert crashed.is_error
    assert [c.text for c in crashed.content] == ["Error executing tool crash"]  # no cause shown
    crash = one(scenario.spans, "tools/call crash")
    assert crash.status_code == ERROR
    assert crash.status_message == "Error executing tool crash"
    (event,) = [e for e in crash.events if e["name"] == "exception"]
    assert event["attributes"]["exception.type"] == "ValueError"
    assert (
        event["attributes"]["exception.message"] == "upstream timed out fetching https://x.test/a"
    )


def test_resource_read_is_a_retriever_span_and_prompt_get_a_prompt_span(scenario: Run) -> None:
    assert scenario.results["resource"].contents[0].text == "notes about otters"
    resource = one(scenario.spans, "resources/read").attributes
    assert resource["plyra.span.kind"] == "RETRIEVER"
    assert resource["input.value"] == "notes://otters"
    assert resource["output.value"] == "notes about otters"
    assert resource["retrieval.documents.0.document.id"] == "notes://otters"
    assert resource["retrieval.documents.0.document.content"] == "notes about otters"
    assert resource["agent.handoff.from"] == "researcher"
    prompt = one(scenario.spans, "prompts/get summarize").attributes
    assert prompt["plyra.span.kind"] == "PROMPT"
    assert json.loads(prompt["input.value"]) == {"topic": "otters"}
    assert json.loads(prompt["output.value"]) == [
        {"role": "user", "content": "Summarize what we know about otters."}
    ]


def test_instrumented_client_calling_a_plain_server(otlp: OTLPReceiver, scenario: Run) -> None:
    """The server has no plyra_trace (nor any OpenTelemetry SDK): calls behave exactly as they
    do against the instrumented one, and the context still arrives in ``_meta``."""
    params = stdio_server("stdio-plain", otlp.url, "tools-plain")

    @plyra_trace.agent(name="planner")
    async def plan() -> dict[str, Any]:
        results: dict[str, Any] = {}
        async with Client(params) as client:
            instrument_client(client)
            with plyra_trace.session("conv-7"), plyra_trace.handoff(reason="peek"):
                results["search"] = await client.call_tool("search", {"query": "otters"})
                results["refuse"] = await client.call_tool("refuse", {"reason": "quota"})
                results["crash"] = await client.call_tool("crash", {"url": "https://x.test/a"})
                results["resource"] = await client.read_resource("notes://otters")
                results["prompt"] = await client.get_prompt("summarize", {"topic": "otters"})
                results["meta"] = await client.call_tool("echo_meta", {})
        return results

    results = run_agent(otlp.url, "agent-plain", plan)
    for name in ("search", "refuse", "crash", "resource", "prompt"):
        assert wire(results[name]) == wire(scenario.results[name]), name
    client_side = wait_for_trace(otlp, "planner", "tools-plain", {"MCP send tools/call echo_meta"})
    assert not of(client_side, "tools-plain")
    for name in ("search", "refuse", "crash"):
        one(client_side, f"MCP send tools/call {name}", CLIENT)
    echo = one(client_side, "MCP send tools/call echo_meta", CLIENT)
    meta = results["meta"].structured_content
    assert meta["traceparent"] == f"00-{echo.trace_id}-{echo.span_id}-03"
    entries = dict(item.split("=", 1) for item in meta["baggage"].split(","))
    assert entries["session.id"] == "conv-7"
    assert entries["plyra.handoff.from"] == "planner"
    assert entries["plyra.handoff.reason"] == "peek"
    assert entries["plyra.handoff.protocol"] == "mcp"


def test_plain_client_calling_an_instrumented_server(otlp: OTLPReceiver) -> None:
    """The client has OpenTelemetry (plyra_trace.init) but not ``instrument_client``: mcp's own
    injection keeps one trace; no handoff is claimed, the session still arrives in baggage."""
    params = stdio_server("stdio", otlp.url, "tools-uninstrumented")

    @plyra_trace.agent(name="scout")
    async def scout() -> dict[str, Any]:
        async with Client(params) as client:
            with plyra_trace.session("conv-8"), plyra_trace.user("lin"):
                return {"search": await client.call_tool("search", {"query": "voles"})}

    results = run_agent(otlp.url, "agent-uninstrumented", scout)
    assert results["search"].content[0].text == "results for voles"
    names = {"scout", "MCP send tools/call search", "tools/call search", "chat ranker-1"}
    spans = wait_for_trace(otlp, "scout", "tools-uninstrumented", names)
    agent = one(spans, "scout")
    assert {s.trace_id for s in spans} == {agent.trace_id}
    client = one(spans, "MCP send tools/call search", CLIENT)
    server = one(spans, "tools/call search", SERVER)
    assert server.parent_id == client.span_id
    assert server.attributes["plyra.span.kind"] == "TOOL"
    assert not any(key.startswith("agent.handoff.") for key in server.attributes)
    for span in of(spans, "tools-uninstrumented"):
        if span.name == "server/discover":
            continue  # sent on connecting, before the session began
        assert span.attributes.get("session.id") == "conv-8", span.name
        assert span.attributes.get("user.id") == "lin", span.name
