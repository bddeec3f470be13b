"""tools: an MCP server (streamable HTTP) with web tools the researcher calls."""

from __future__ import annotations

import hashlib
import os

import uvicorn
from mcp.server.mcpserver import MCPServer

from examples.multi_service.common import init_tracing
from plyra_trace.integrations.mcp import instrument_server

handle = init_tracing("tools")
server = MCPServer("tools")


@server.tool()
def search(query: str, limit: int = 3) -> list[dict[str, str]]:
    """Search the (simulated) web; returns titles and URLs."""
    digest = hashlib.sha256(query.encode()).hexdigest()
    return [
        {
            "title": f"{query.title()}: report {i + 1}",
            "url": f"https://example.org/{digest[:6]}/{i}",
        }
        for i in range(limit)
    ]


@server.tool()
def fetch(url: str) -> str:
    """Fetch a page's text; some pages are unreachable and return an error result."""
    if int(hashlib.sha256(url.encode()).hexdigest(), 16) % 4 == 0:
        raise ValueError(f"upstream timed out fetching {url}")
    return f"Contents of {url}: figures, quotes and a table of numbers."


instrument_server(server, agent_name="tools")
app = server.streamable_http_app()

if __name__ == "__main__":
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8103")),
        log_level="warning",
    )
