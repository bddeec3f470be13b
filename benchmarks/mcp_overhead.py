"""Cost of the MCP integration: an in-process tool call, instrumented vs not, same pipeline.

Both sides run under the same ``plyra_trace.init`` (no exporter: the no-op processor), so mcp's
own server span exists on both; the ratio is what ``instrument_server`` and ``instrument_client``
add: extracting ``_meta``, the handoff and scope context, kind/input/output attributes. The tool
is trivial, so the ratio is the worst case.

Target: instrumented <= 1.3x uninstrumented (the median of per-round ratios: short rounds of
each side, interleaved, so both see the same machine load).

Run: uv run python benchmarks/mcp_overhead.py [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp import Client
from mcp.server.mcpserver import MCPServer

import plyra_trace
from plyra_trace.integrations.mcp import instrument_client, instrument_server


def build_server() -> MCPServer:
    server = MCPServer("bench")

    @server.tool()
    def search(query: str, limit: int = 3) -> str:
        """A trivial tool: the call's cost is mcp's and ours."""
        return f"{limit} results for {query}"

    return server


async def per_call(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    """Mean time per call in microseconds over ``calls`` calls."""
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - started) / calls * 1e6


async def measure(calls: int, rounds: int) -> tuple[float, float, float]:
    """Best plain and instrumented time per call, and the median of the per-round ratios."""
    plain_server, traced_server = build_server(), build_server()
    instrument_server(traced_server, agent_name="tools")
    arguments = {"query": "top EV companies", "limit": 3}

    @plyra_trace.agent(name="researcher")
    async def run() -> tuple[float, float, float]:
        async with Client(plain_server) as plain, Client(traced_server) as traced:
            instrument_client(traced)

            async def plain_call() -> Any:
                return await plain.call_tool("search", arguments)

            async def traced_call() -> Any:
                with plyra_trace.handoff(to="tools", reason="look it up"):
                    return await traced.call_tool("search", arguments)

            for call in (plain_call, traced_call):  # warm up caches and tool schemas
                await per_call(call, 200)
            plain_times, traced_times, ratios = [], [], []
            for _ in range(rounds):  # short interleaved rounds: both sides see the same load
                plain_time = await per_call(plain_call, calls)
                traced_time = await per_call(traced_call, calls)
                plain_times.append(plain_time)
                traced_times.append(traced_time)
                ratios.append(traced_time / plain_time)
            return min(plain_times), min(traced_times), statistics.median(ratios)

    with plyra_trace.session("bench-session"), plyra_trace.user("bench-user"):
        return await run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()

    handle = plyra_trace.init("bench", console=False)  # no exporter: the no-op processor
    try:
        plain, traced, ratio = asyncio.run(measure(args.calls, args.rounds))
    finally:
        handle.shutdown()
    print(f"in-process tools/call, uninstrumented: {plain:8.1f} us (best round)")
    print(f"in-process tools/call, instrumented:   {traced:8.1f} us (best round)")
    print(f"ratio of best rounds: {traced / plain:.2f}x")
    verdict = "OK" if ratio <= 1.3 else "MISSED"
    print(f"median per-round ratio: {ratio:.2f}x (target <= 1.30x) {verdict}")


if __name__ == "__main__":
    main()
