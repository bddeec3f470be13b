"""Cost of tracing a Celery publish, against the same publish untraced, in one process.

``apply_async`` on Celery's in-memory transport with no worker: the baseline is the publish alone
(Celery builds, serialises and queues the message), the traced run adds what the integration does
on ``before_task_publish`` / ``after_task_publish``: a PRODUCER span, baggage and header injection.
Both run on the same provider and the same no-op export processor, inside an ``@agent`` so the
handoff baggage is written as it would be in an application. The queue is purged between rounds.

Target: traced publish <= 1.3x the untraced publish.

Run: uv run python benchmarks/celery_publish.py [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from celery import Celery

import plyra_trace
from plyra_trace.integrations import celery as celery_integration


def best_per_call(
    fn: Callable[[], object], calls: int, rounds: int, reset: Callable[[], object]
) -> float:
    """Best-of-``rounds`` mean time per call in microseconds (best-of filters scheduler noise)."""
    results = []
    for _ in range(rounds):
        reset()
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        results.append((time.perf_counter() - started) / calls * 1e6)
    reset()
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=7)
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

    @plyra_trace.agent(name="planner")
    def measure() -> float:
        with plyra_trace.session("s-1"), plyra_trace.handoff(to="writer", reason="draft"):
            return best_per_call(publish, args.calls, args.rounds, purge)

    with app.connection_for_write() as connection:
        channel = connection.default_channel

        def purge() -> object:
            return channel.queue_purge("celery")

        publish()  # declare the queue and warm the producer pool
        for _ in range(2):  # interleave to even out drift (CPU frequency, allocator state)
            celery_integration.uninstrument()
            untraced = measure()
            celery_integration.instrument(app, agent_name="planner")
            traced = measure()
        celery_integration.uninstrument()

    print(f"{'apply_async untraced':32s} {untraced:8.2f} us/call")
    print(f"{'apply_async traced':32s} {traced:8.2f} us/call")
    print(f"{'added by tracing':32s} {traced - untraced:8.2f} us/call")
    print()
    print(f"traced vs untraced publish: {traced / untraced:.2f}x   (target <= 1.30x)")
    handle.shutdown()


if __name__ == "__main__":
    main()
