"""MCP in one process (``Client(server)``): the low-level ``Server``, error paths, idempotence, and
a server that opted out of mcp's own spans."""

from __future__ import annotations

from typing import Any

import mcp.types as types
import pytest
from mcp import Client, MCPError
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import plyra_trace
from plyra_trace.integrations.mcp import (
    instrument_client,
    instrument_http_client,
    instrument_server,
)


def lowlevel_server() -> Server[Any]:
    """A low-level server whose tools succeed, return an error result, or raise."""

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        schema = {"type": "object", "properties": {"x": {"type": "string"}}}
        return types.ListToolsResult(
            tools=[types.Tool(name=n, input_schema=schema) for n in ("ok", "soft", "hard")]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        text = (params.arguments or {}).get("x", "")
        if params.name == "hard":
            raise RuntimeError(f"disk full while writing {text}")
        content = [types.TextContent(type="text", text=f"{params.name}: {text}")]
        return types.CallToolResult(content=content, is_error=params.name == "soft")

    return Server("low", on_list_tools=list_tools, on_call_tool=call_tool)


async def call_all(server: Server[Any]) -> dict[str, Any]:
    """Each tool's result, or the MCPError the client raised."""
    outcomes: dict[str, Any] = {}
    async with Client(server) as client:
        instrument_client(client)
        for name in ("ok", "soft", "hard"):
            try:
                result = await client.call_tool(name, {"x": "v"})
                outcomes[name] = result.model_dump(exclude={"meta"})
            except MCPError as error:
                outcomes[name] = ("MCPError", error.error.code, error.error.message)
    return outcomes


async def test_lowlevel_server_answers_as_without_us_and_records_outcomes(
    exporter: InMemorySpanExporter,
) -> None:
    baseline = await call_all(lowlevel_server())
    server = instrument_server(lowlevel_server(), agent_name="low")

    @plyra_trace.agent(name="caller")
    async def caller() -> dict[str, Any]:
        with plyra_trace.session("s-low"):
            return await call_all(server)

    assert await caller() == baseline
    assert baseline["hard"][0] == "MCPError"
    spans = {s.name: s for s in exporter.get_finished_spans() if s.name.startswith("tools/call")}
    ok, soft, hard = spans["tools/call ok"], spans["tools/call soft"], spans["tools/call hard"]
    for span in (ok, soft, hard):
        assert span.attributes["plyra.span.kind"] == "TOOL"
        assert span.attributes["agent.handoff.from"] == "caller"
        assert span.attributes["agent.handoff.to"] == "low"
        assert span.attributes["session.id"] == "s-low"
    assert ok.status.status_code is StatusCode.UNSET
    assert ok.attributes["output.value"] == "ok: v"
    assert soft.status.status_code is StatusCode.ERROR
    assert soft.status.description == "soft: v"
    assert hard.status.status_code is StatusCode.ERROR
    assert "disk full while writing v" in hard.status.description
    assert [e.attributes["exception.type"] for e in hard.events] == ["RuntimeError"]


async def test_instrumenting_twice_changes_nothing(exporter: InMemorySpanExporter) -> None:
    server = MCPServer("twice")

    @server.tool()
    def echo(text: str) -> str:
        return text

    instrument_server(server, agent_name="twice")
    middleware = list(server.middleware)
    call_tool = server.call_tool
    instrument_server(server, agent_name="twice")
    assert server.middleware == middleware and server.call_tool is call_tool
    async with Client(server) as client:
        instrument_client(client)
        wrapped = client.call_tool
        instrument_client(client)
        assert client.call_tool is wrapped
        assert (await client.call_tool("echo", {"text": "hi"})).content[0].text == "hi"
    tools = [s for s in exporter.get_finished_spans() if s.name == "tools/call echo"]
    assert len(tools) == 1


def test_instrument_server_rejects_what_is_not_an_mcp_server() -> None:
    with pytest.raises(TypeError):
        instrument_server(object())


def test_instrument_http_client_adds_one_hook(exporter: InMemorySpanExporter) -> None:
    import httpx2

    http = httpx2.AsyncClient()
    assert instrument_http_client(instrument_http_client(http)) is http
    assert len(http.event_hooks["request"]) == 1


async def test_server_without_mcps_own_spans_leaves_the_callers_spans_alone(
    exporter: InMemorySpanExporter,
) -> None:
    """A server that removed mcp's OpenTelemetryMiddleware has no span to enrich: the caller's
    span (current in-process) must not be turned into a TOOL span."""
    server = MCPServer("quiet")

    @server.tool()
    def work() -> str:
        @plyra_trace.tool(name="inner")
        def inner() -> str:
            return "done"

        return inner()

    server.middleware.clear()
    instrument_server(server, agent_name="quiet")

    @plyra_trace.agent(name="caller")
    async def caller() -> str:
        with plyra_trace.session("s-quiet"):
            async with Client(server) as client:
                instrument_client(client)
                return str((await client.call_tool("work", {})).content[0].text)

    assert await caller() == "done"
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["caller"].attributes["plyra.span.kind"] == "AGENT"
    assert "tool.name" not in spans["caller"].attributes
    assert spans["inner"].attributes["session.id"] == "s-quiet"
    assert spans["inner"].parent.span_id == spans["caller"].context.span_id
