"""A long agent run in its own process for the live-span tests.

``python -m tests.live_agent ENDPOINT STEPS STEP_SECONDS DELAY HEARTBEAT``: prints ``TRACE <id>``
as the run starts, then ``DONE`` after the spans were flushed. An agent with STEPS tool calls of
STEP_SECONDS each, exported with live spans after DELAY and heartbeats every HEARTBEAT seconds.
"""

from __future__ import annotations

import sys
import time

from opentelemetry import trace

import plyra_trace


def main(endpoint: str, steps: int, step_seconds: float, delay: float, heartbeat: float) -> None:
    handle = plyra_trace.init(
        "live-tests",
        service_name="runner",
        endpoint=endpoint,
        console=False,
        live_delay=delay,
        live_heartbeat=heartbeat,
        schedule_delay_millis=100,
    )

    @plyra_trace.tool(name="step")
    def step(index: int) -> int:
        time.sleep(step_seconds)
        return index

    @plyra_trace.agent(name="long-runner")
    def run(task: str) -> int:
        trace_id = trace.get_current_span().get_span_context().trace_id
        print(f"TRACE {trace_id:032x}", flush=True)
        return sum(step(i) for i in range(steps))

    run("research the market")
    handle.shutdown()
    print("DONE", flush=True)


if __name__ == "__main__":
    endpoint, steps, seconds, delay, beat = sys.argv[1:6]
    main(endpoint, int(steps), float(seconds), float(delay), float(beat))
