"""Cost of auto-instrumentation on a mocked provider call, in one process.

The same OpenAI and Anthropic calls (httpx2 MockTransport, no network) run with and without
``plyra_trace.instrument(...)``; both runs go through the same ``init()`` pipeline with a no-op
exporter. The ratio is what the OpenInference instrumentor plus plyra's enrichment (kind,
tokens, genai-prices cost, dedup) add to a call whose own cost is the SDK's request/response
handling. A real provider call takes hundreds of milliseconds, so the added microseconds matter
far less than the ratio suggests. (anthropic 2.x traces itself in both runs.)

Run: uv run python benchmarks/auto_overhead.py [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import anthropic
import httpx2
import openai
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import plyra_trace

_CHAT = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
}
_MESSAGE = {
    "id": "m1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 100, "output_tokens": 20},
}


class _Discard(SpanExporter):
    """Accepts and forgets spans: the benchmark measures making them, not shipping them."""

    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def best_per_call(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """Best-of-``rounds`` mean time per call in microseconds."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        results.append((time.perf_counter() - started) / calls * 1e6)
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)

    handle = plyra_trace.init("bench", exporter=_Discard(), batch=False, console=False)
    oai = openai.OpenAI(
        api_key="k",
        http_client=httpx2.Client(
            transport=httpx2.MockTransport(lambda r: httpx2.Response(200, json=_CHAT))
        ),
    )
    ant = anthropic.Anthropic(
        api_key="k",
        http_client=httpx2.Client(
            transport=httpx2.MockTransport(lambda r: httpx2.Response(200, json=_MESSAGE))
        ),
    )
    messages: list[dict[str, str]] = [{"role": "user", "content": "hello"}]
    calls: dict[str, Callable[[], object]] = {
        "openai chat.completions.create": lambda: oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,  # type: ignore[arg-type]
        ),
        "anthropic messages.create": lambda: ant.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=10,
            messages=messages,  # type: ignore[arg-type]
        ),
    }
    for fn in calls.values():  # warm up imports, price table, connection pools
        for _ in range(20):
            fn()

    print(f"{'call':34} {'plain µs':>10} {'instrumented µs':>16} {'ratio':>7}")
    for name, fn in calls.items():
        plyra_trace.uninstrument()
        plain = best_per_call(fn, args.calls, args.rounds)
        plyra_trace.instrument("openai", "anthropic")
        for _ in range(20):
            fn()
        instrumented = best_per_call(fn, args.calls, args.rounds)
        print(f"{name:34} {plain:10.1f} {instrumented:16.1f} {instrumented / plain:6.2f}x")
    plyra_trace.uninstrument()
    handle.shutdown()


if __name__ == "__main__":
    main()
