"""Cost of plyra decorators against raw OpenTelemetry spans, in one process, same pipeline.

Prints ratios (lower is better). The baseline is ``tracer.start_as_current_span`` on the same
provider and the same no-op export processor, so the ratio is what the decorator itself adds:
kind attributes, input/output capture, context bookkeeping.

Also reported: @agent against the same span written by hand with plain OpenTelemetry (same
attributes, json.dumps for input and output), i.e. what the decorator costs beyond its data.

Targets: @agent with capture <= 1.4x raw; three nested decorated calls <= 1.5x three nested raw
spans; session/user/metadata/tags around a call add <= 10%.

Run: uv run python benchmarks/decorator_overhead.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from opentelemetry import trace

import plyra_trace


def best_per_call(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """Best-of-``rounds`` mean time per call in microseconds (best-of filters scheduler noise)."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        results.append((time.perf_counter() - started) / calls * 1e6)
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    handle = plyra_trace.init("bench", console=False)  # no exporter: the no-op processor
    tracer = trace.get_tracer("bench.raw")

    def work(query: str) -> dict[str, object]:
        return {"answer": query, "score": 0.9}

    def raw_one() -> object:
        with tracer.start_as_current_span("raw"):
            return work("what are the top EV companies?")

    @plyra_trace.agent(name="researcher")
    def agent_one(query: str) -> dict[str, object]:
        return work(query)

    agent_attributes = {
        "plyra.span.kind": "AGENT",
        "openinference.span.kind": "AGENT",
        "gen_ai.operation.name": "invoke_agent",
        "agent.name": "researcher",
        "gen_ai.agent.name": "researcher",
    }

    def by_hand(query: str) -> dict[str, object]:
        """What a careful user would write to record the same span without plyra."""
        attributes = {
            **agent_attributes,
            "input.value": json.dumps({"query": query}),
            "input.mime_type": "application/json",
        }
        with tracer.start_as_current_span("researcher", attributes=attributes) as span:
            result = work(query)
            span.set_attributes(
                {"output.value": json.dumps(result), "output.mime_type": "application/json"}
            )
            return result

    def by_hand_one() -> object:
        return by_hand("what are the top EV companies?")

    def raw_nested() -> object:
        with tracer.start_as_current_span("a"):
            with tracer.start_as_current_span("b"):
                with tracer.start_as_current_span("c"):
                    return work("q")

    @plyra_trace.tool(name="search")
    def inner(query: str) -> dict[str, object]:
        return work(query)

    @plyra_trace.agent(name="researcher")
    def middle(query: str) -> dict[str, object]:
        return inner(query)

    @plyra_trace.agent(name="orchestrator")
    def outer(query: str) -> dict[str, object]:
        return middle(query)

    def decorated_one() -> object:
        return agent_one("what are the top EV companies?")

    def decorated_nested() -> object:
        return outer("q")

    def in_context() -> object:
        with (
            plyra_trace.session("s-1"),
            plyra_trace.user("u-1"),
            plyra_trace.metadata({"tier": "pro"}),
            plyra_trace.tags(["bench"]),
        ):
            return agent_one("what are the top EV companies?")

    with (
        plyra_trace.session("s-1"),
        plyra_trace.user("u-1"),
        plyra_trace.metadata({"tier": "pro"}),
        plyra_trace.tags(["bench"]),
    ):
        context_around = best_per_call(decorated_one, args.calls, args.rounds)

    for warm in (raw_one, by_hand_one, decorated_one, raw_nested, decorated_nested, in_context):
        best_per_call(warm, 2_000, 1)

    results = {
        "raw span": best_per_call(raw_one, args.calls, args.rounds),
        "raw span, same attributes by hand": best_per_call(by_hand_one, args.calls, args.rounds),
        "@agent (capture on)": best_per_call(decorated_one, args.calls, args.rounds),
        "3 nested raw": best_per_call(raw_nested, args.calls, args.rounds),
        "3 nested decorated": best_per_call(decorated_nested, args.calls, args.rounds),
        "@agent in session/user/metadata/tags": context_around,
        "@agent entering the 4 blocks per call": best_per_call(in_context, args.calls, args.rounds),
    }
    for name, micros in results.items():
        print(f"{name:40s} {micros:8.2f} us/call")
    single = results["@agent (capture on)"] / results["raw span"]
    nested = results["3 nested decorated"] / results["3 nested raw"]
    context = context_around / results["@agent (capture on)"] - 1
    entering = results["@agent entering the 4 blocks per call"] / results["@agent (capture on)"] - 1
    print()
    print(f"@agent vs raw span:                  {single:.2f}x   (target <= 1.40x)")
    print(
        f"@agent vs the same span by hand:     "
        f"{results['@agent (capture on)'] / results['raw span, same attributes by hand']:.2f}x"
        "   (what the decorator adds beyond its attributes)"
    )
    print(f"3 nested decorated vs 3 nested raw:  {nested:.2f}x   (target <= 1.50x)")
    print(f"context managers add:                {context * 100:+.1f}%  (target <= +10%)")
    print(f"  (entering all four blocks per call:   {entering * 100:+.1f}%)")
    handle.shutdown()


if __name__ == "__main__":
    main()
