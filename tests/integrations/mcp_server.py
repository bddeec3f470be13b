"""A real MCP server for the cross-process MCP tests, run as its own process.

    python -m tests.integrations.mcp_server stdio         # instrumented, over stdio
    python -m tests.integrations.mcp_server stdio-plain   # no plyra_trace at all, over stdio
    python -m tests.integrations.mcp_server http          # instrumented, uvicorn + PlyraMiddleware

The instrumented modes export OTLP to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (read by
``plyra_trace.init``) as service ``OTEL_SERVICE_NAME`` (default ``tools-svc``). ``http`` prints
``PORT <n>`` once it listens on 127.0.0.1 and stops on SIGTERM. The plain mode never imports
plyra_trace: it is the baseline the instrumented server's responses are compared with.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

AGENT = "tools"


def _rank(query: str) -> dict[str, Any]:
    """A stand-in model call made by the search tool's body."""
    return {"choices": [query], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}


def build(instrumented: bool) -> MCPServer:
    """The server: the same tools, resource and prompt in every mode."""
    rank: Callable[[str], dict[str, Any]] = _rank
    if instrumented:
        import plyra_trace

        rank = plyra_trace.llm(model="ranker-1", provider="local")(_rank)

    server = MCPServer(AGENT)

    @server.tool()
    def search(query: str) -> str:
        """Search the notes; ranks the hits with a model call."""
        rank(query)
        return f"results for {query}"

    @server.tool()
    def refuse(reason: str) -> str:
        """Always declines: an anticipated failure, returned as an isError result."""
        raise ToolError(f"refused: {reason}")

    @server.tool()
    def crash(url: str) -> str:
        """Always crashes: mcp hides the cause from the client."""
        raise ValueError(f"upstream timed out fetching {url}")

    @server.tool()
    def echo_meta(ctx: Context) -> dict[str, Any]:
        """Returns the request ``_meta`` the server handed to the tool."""
        return dict(ctx.request_context.meta or {})

    @server.resource("notes://{topic}")
    def notes(topic: str) -> str:
        """Notes about a topic."""
        return f"notes about {topic}"

    @server.prompt()
    def summarize(topic: str) -> str:
        """A prompt asking for a summary."""
        return f"Summarize what we know about {topic}."

    if instrumented:
        from plyra_trace.integrations.mcp import instrument_server

        instrument_server(server, agent_name=AGENT)
    return server


def _init() -> Any:
    import plyra_trace

    service = os.environ.get("OTEL_SERVICE_NAME", "tools-svc")
    return plyra_trace.init(project="mcp-e2e", service_name=service, batch=False, console=False)


def _serve_http() -> None:
    import socket
    import threading
    import time

    import uvicorn

    from plyra_trace import PlyraMiddleware

    handle = _init()
    app = PlyraMiddleware(build(instrumented=True).streamable_http_app(), agent_name=AGENT)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.01)
        print(f"PORT {sock.getsockname()[1]}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])  # uvicorn handles SIGTERM: a graceful stop
    handle.shutdown()


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "stdio-plain":
        build(instrumented=False).run("stdio")
    elif mode == "stdio":
        handle = _init()
        try:
            build(instrumented=True).run("stdio")
        finally:
            handle.shutdown()
    elif mode == "http":
        _serve_http()
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
