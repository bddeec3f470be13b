"""Cost of plyra decorators against the cheapest OpenTelemetry span, in one process.

Prints ratios (lower is better), each the median of per-round ratios; rounds interleave every
variant so all of them see the same machine load, and time is the measuring thread's CPU time, so
waiting for a core on a shared machine is not counted.

Two baselines:
- **bare span**: ``start_as_current_span`` on a TracerProvider of its own whose only processor
  does nothing. This is the cheapest span OpenTelemetry can make; the ratio is everything plyra
  costs (its pipeline, kind attributes, input/output capture, context bookkeeping).
  Targets: @agent with capture <= 2.5x a bare span; three nested decorated calls <= 2.3x three
  nested bare spans.
- **raw span, plyra's pipeline**: the same call on plyra's provider (router, enrichment, compat and
  auto-instrumentation processors, no-op export), i.e. what the decorator adds over a plain span
  that goes through the same pipeline. Targets: <= 1.4x and <= 1.5x.

Also reported: @agent against the same span written by hand (same attributes, json.dumps for
input and output), what session/user/metadata/tags blocks around a call add (<= +10%), and what
live spans add to a call that ends before ``live_delay`` (a plyra collector identified; <= +5%).

Run: uv run python benchmarks/decorator_overhead.py [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

import plyra_trace

Batch = Callable[[int], object]  # makes N calls


def repeat(fn: Callable[[], object]) -> Batch:
    def batch(calls: int) -> object:
        for _ in range(calls):
            fn()
        return None

    return batch


def interleaved(variants: dict[str, Batch], calls: int, rounds: int) -> dict[str, list[float]]:
    """Per-round microseconds per call of every variant, the variants run one after another
    within each round (so a burst of load elsewhere hits all of them alike)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, batch in variants.items():
            started = time.thread_time()
            batch(calls)
            times[name].append((time.thread_time() - started) / calls * 1e6)
    return times


def ratio(times: dict[str, list[float]], measured: str, baseline: str) -> float:
    """Median over rounds of measured/baseline (both from the same round)."""
    return statistics.median(a / b for a, b in zip(times[measured], times[baseline], strict=True))


def bare_tracer() -> trace.Tracer:
    """A tracer on a provider of its own with one do-nothing processor: the cheapest span."""
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())
    return provider.get_tracer("bench.bare")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    handle = plyra_trace.init("bench", console=False)  # no exporter: the no-op processor
    tracer = trace.get_tracer("bench.raw")  # plyra's provider: the whole pipeline runs
    bare = bare_tracer()

    def work(query: str) -> dict[str, object]:
        return {"answer": query, "score": 0.9}

    def bare_one() -> object:
        with bare.start_as_current_span("bare"):
            return work("what are the top EV companies?")

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
        with bare.start_as_current_span("researcher", attributes=attributes) as span:
            result = work(query)
            span.set_attributes(
                {"output.value": json.dumps(result), "output.mime_type": "application/json"}
            )
            return result

    def by_hand_one() -> object:
        return by_hand("what are the top EV companies?")

    def nested(on: trace.Tracer) -> Callable[[], object]:
        def three() -> object:
            with on.start_as_current_span("a"):
                with on.start_as_current_span("b"):
                    with on.start_as_current_span("c"):
                        return work("q")

        return three

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

    def context_around(calls: int) -> object:
        """The four blocks entered once around a batch of calls."""
        with (
            plyra_trace.session("s-1"),
            plyra_trace.user("u-1"),
            plyra_trace.metadata({"tier": "pro"}),
            plyra_trace.tags(["bench"]),
        ):
            for _ in range(calls):
                agent_one("what are the top EV companies?")
        return None

    variants: dict[str, Batch] = {
        "bare span (own provider, no-op processor)": repeat(bare_one),
        "raw span, plyra's pipeline": repeat(raw_one),
        "bare span, same attributes by hand": repeat(by_hand_one),
        "@agent (capture on)": repeat(decorated_one),
        "@agent in session/user/metadata/tags": context_around,
        "@agent entering the 4 blocks per call": repeat(in_context),
        "3 nested bare": repeat(nested(bare)),
        "3 nested raw, plyra's pipeline": repeat(nested(tracer)),
        "3 nested decorated": repeat(decorated_nested),
    }
    interleaved(variants, 500, 2)  # warm-up
    times = interleaved(variants, args.calls, args.rounds)

    for name, values in times.items():
        print(
            f"{name:44s} {min(values):8.2f} us/call (best)  {statistics.median(values):8.2f} median"
        )
    print(f"\n(ratios: medians of {args.rounds} interleaved rounds of {args.calls} calls)")
    rows = [
        (
            "@agent vs bare span",
            "@agent (capture on)",
            "bare span (own provider, no-op processor)",
            "<= 2.50x",
        ),
        ("3 nested decorated vs 3 nested bare", "3 nested decorated", "3 nested bare", "<= 2.30x"),
        (
            "@agent vs raw span, plyra's pipeline",
            "@agent (capture on)",
            "raw span, plyra's pipeline",
            "<= 1.40x",
        ),
        (
            "3 nested decorated vs 3 nested raw",
            "3 nested decorated",
            "3 nested raw, plyra's pipeline",
            "<= 1.50x",
        ),
        (
            "raw span, plyra's pipeline vs bare span",
            "raw span, plyra's pipeline",
            "bare span (own provider, no-op processor)",
            "(the pipeline)",
        ),
        (
            "@agent vs the same span by hand",
            "@agent (capture on)",
            "bare span, same attributes by hand",
            "(beyond its data)",
        ),
    ]
    for label, measured, baseline, target in rows:
        print(f"{label:44s} {ratio(times, measured, baseline):5.2f}x   {target}")
    context = ratio(times, "@agent in session/user/metadata/tags", "@agent (capture on)") - 1
    entering = ratio(times, "@agent entering the 4 blocks per call", "@agent (capture on)") - 1
    print(f"{'context managers around calls add':44s} {context * 100:+5.1f}%   <= +10%")
    print(f"{'  (entering all four blocks per call)':44s} {entering * 100:+5.1f}%")
    live = live_overhead(repeat(decorated_one), args.calls, args.rounds)
    print(f"{'live spans on, call ends before the delay':44s} {live * 100:+5.1f}%   <= +5%")
    handle.shutdown()


def live_overhead(calls_of: Batch, calls: int, rounds: int) -> float:
    """Extra time per call with the live-span processor in ``init()``'s pipeline (as with a
    plyra collector identified), the call ending before ``live_delay``: interleaved rounds with
    and without it, median of the rounds' ratios."""
    from plyra_trace import _config
    from plyra_trace._live import PLYRA, LiveSpanProcessor

    pipeline = _config._process.router.pipeline
    assert pipeline is not None
    live = LiveSpanProcessor("http://127.0.0.1:9/v1/traces", "http://127.0.0.1:9/v1/live", {})
    live.state = PLYRA

    def with_live(n: int) -> object:
        pipeline._starts.append(live.on_start)
        pipeline._ends.append(live.on_end)
        try:
            return calls_of(n)
        finally:
            pipeline._starts.remove(live.on_start)
            pipeline._ends.remove(live.on_end)

    times = interleaved({"off": calls_of, "on": with_live}, calls, rounds)
    live.shutdown()
    return ratio(times, "on", "off") - 1


if __name__ == "__main__":
    main()
