"""Cost of tracing a Celery publish, against the same publish untraced, in one process.

``apply_async`` on Celery's in-memory transport with no worker: the baseline is the publish alone
(Celery builds, serialises and queues the message), the traced run adds what the integration does
on ``before_task_publish`` / ``after_task_publish``: a PRODUCER span, baggage and header injection.
Both run on the same provider and the same no-op export processor, inside an ``@agent`` so the
handoff baggage is written as it would be in an application. The queue is purged between rounds,
and untraced and traced rounds alternate. A bare SDK span start+end is printed for scale: most of
what tracing adds is one span's start and end plus Celery dispatching two signals.

Target: traced publish <= 1.3x the untraced publish.

Run: uv run python benchmarks/celery_publish.py [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from celery import Celery
from opentelemetry import trace

import plyra_trace
from plyra_trace.integrations import celery as celery_integration


def per_call(fn: Callable[[], object], calls: int, reset: Callable[[], object]) -> float:
    """Mean time per call in microseconds over ``calls`` calls, from an empty queue."""
    reset()
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()

    handle = plyra_trace.init("bench", console=False)  # no exporter: the no-op processor
    app = Celery("bench", broker="memory://", backend="disabled://", set_as_current=False)
    app.conf.update(task_serializer="json", task_ignore_result=True)

    @app.task(name="bench.write", shared=False)
    def write(question: str, notes: dict[str, Any]) -> None:
        return None

    notes = {"documents": [{"ok": True, "text": "EV makers grew 30% in 2024"}] * 3}

    def publish() -> object:
        return write.apply_async(("what are the top EV companies?", notes))

    with app.connection_for_write() as connection:
        channel = connection.default_channel

        def purge() -> object:
            return channel.queue_purge("celery")

        @plyra_trace.agent(name="planner")
        def measure() -> tuple[float, float]:
            """Best of ``rounds``, untraced and traced rounds alternating: drift (CPU frequency,
            other processes, allocator state) hits both alike; best-of filters the noise."""
            untraced, traced = [], []
            with plyra_trace.session("s-1"), plyra_trace.handoff(to="writer", reason="draft"):
                for _ in range(args.rounds):
                    celery_integration.uninstrument()
                    untraced.append(per_call(publish, args.calls, purge))
                    celery_integration.instrument(app, agent_name="planner")
                    traced.append(per_call(publish, args.calls, purge))
            celery_integration.uninstrument()
            purge()
            return min(untraced), min(traced)

        publish()  # declare the queue and warm the producer pool
        untraced, traced = measure()

    tracer = trace.get_tracer("bench.raw")
    bare = min(
        per_call(lambda: tracer.start_span("raw").end(), args.calls, lambda: None)
        for _ in range(args.rounds)
    )

    print(f"{'apply_async untraced':32s} {untraced:8.2f} us/call")
    print(f"{'apply_async traced':32s} {traced:8.2f} us/call")
    print(f"{'added by tracing':32s} {traced - untraced:8.2f} us/call")
    print(f"{'(one bare SDK span, for scale)':32s} {bare:8.2f} us/call")
    print()
    print(f"traced vs untraced publish: {traced / untraced:.2f}x   (target <= 1.30x)")
    handle.shutdown()


if __name__ == "__main__":
    main()
