"""Cost of the gRPC interceptors: a unary call over a real channel on 127.0.0.1, traced vs not.

One process runs three servers and channels: plain, with do-nothing interceptors (what grpc's
interceptor machinery costs by itself) and with plyra's interceptors on both sides, all under the
same ``plyra_trace.init`` (no exporter: the no-op processor). Rounds alternate so all see the
same machine load; ratios are medians of per-round ratios. Client and server share one process
and one GIL here, so each side's work also delays the other; separate processes see less. The
handler is trivial, so the ratio is the worst case: a real RPC does work on both ends.

Run: uv run python benchmarks/grpc_overhead.py [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

import plyra_trace
from plyra_trace.integrations.grpc import instrument_channel, server_interceptor

METHOD = "/bench.Researcher/Ask"


def _server(interceptors: list[Any]) -> tuple[grpc.Server, int]:
    def ask(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=interceptors)
    handler = grpc.unary_unary_rpc_method_handler(ask)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Researcher", {"Ask": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


class _PassServer(grpc.ServerInterceptor):  # type: ignore[misc]
    def intercept_service(self, continuation: Any, details: Any) -> Any:
        return continuation(details)


class _PassClient(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)


def per_call(call: Callable[[bytes], bytes], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call(b"what are the top EV companies?")
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    handle = plyra_trace.init("bench", console=False)
    plain_server, plain_port = _server([])
    traced_server, traced_port = _server([server_interceptor(agent_name="researcher")])
    passing_server, passing_port = _server([_PassServer()])
    plain_channel = grpc.insecure_channel(f"127.0.0.1:{plain_port}")
    traced_channel = instrument_channel(grpc.insecure_channel(f"127.0.0.1:{traced_port}"))
    passing_channel = grpc.intercept_channel(
        grpc.insecure_channel(f"127.0.0.1:{passing_port}"), _PassClient()
    )
    plain = plain_channel.unary_unary(METHOD)
    passing = passing_channel.unary_unary(METHOD)
    traced = traced_channel.unary_unary(METHOD)

    @plyra_trace.agent(name="planner")
    def measure() -> tuple[list[float], list[float], list[float]]:
        untraced_rounds, passing_rounds, traced_rounds = [], [], []
        with plyra_trace.session("s-1"), plyra_trace.handoff(reason="bench"):
            per_call(plain, 200)  # warm both channels
            per_call(passing, 200)
            per_call(traced, 200)
            for _ in range(args.rounds):
                untraced_rounds.append(per_call(plain, args.calls))
                passing_rounds.append(per_call(passing, args.calls))
                traced_rounds.append(per_call(traced, args.calls))
        return untraced_rounds, passing_rounds, traced_rounds

    untraced_rounds, passing_rounds, traced_rounds = measure()
    versus_passing = [t / p for p, t in zip(passing_rounds, traced_rounds, strict=True)]
    ratios = [t / u for u, t in zip(untraced_rounds, traced_rounds, strict=True)]
    print(f"{'unary call, plain':36s} {min(untraced_rounds):8.1f} us (best round)")
    print(f"{'unary call, do-nothing interceptors':36s} {min(passing_rounds):8.1f} us (best round)")
    print(f"{'unary call, both sides traced':36s} {min(traced_rounds):8.1f} us (best round)")
    added = min(traced_rounds) - min(untraced_rounds)
    print(f"{'added per call (best rounds)':36s} {added:8.1f} us")
    print(f"\ntraced vs plain (median per-round ratio):     {statistics.median(ratios):.2f}x")
    print(
        f"traced vs do-nothing interceptors (ours only): {statistics.median(versus_passing):.2f}x"
    )
    for channel in (plain_channel, passing_channel, traced_channel):
        channel.close()
    for server in (plain_server, passing_server, traced_server):
        server.stop(None)
    handle.shutdown()


if __name__ == "__main__":
    main()
