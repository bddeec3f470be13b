"""Live spans end to end, with real processes: a long run visible while it runs and then exactly
its finished spans, a process killed with -9 leaving abandoned spans, and a plain OTLP receiver
that never sees anything but finished spans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import plyra_trace
from plyra_trace._config import _process
from plyra_trace._live import LiveSpanProcessor
from tests.collector.conftest import Collector, start_collector, stop_collector
from tests.collector.test_live import live_rows
from tests.otlp_receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    running = start_collector(tmp_path)
    yield running
    stop_collector(running)


def start_run(
    endpoint: str, steps: int, seconds: float, delay: float, beat: float
) -> tuple[subprocess.Popen[str], str]:
    """The agent process (tests/live_agent.py) and the id of its trace, once it started."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.live_agent",
            endpoint,
            *map(str, (steps, seconds, delay, beat)),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("TRACE "), line
    return process, line.split()[1]


def spans_of(collector: Collector, trace_id: str) -> list[dict[str, Any]]:
    response = collector.api.get(f"/api/v1/traces/{trace_id}")
    return list(response.json()["spans"]) if response.status_code == 200 else []


def test_a_long_run_is_visible_while_it_runs_then_exactly_its_finished_spans(collector):
    process, trace_id = start_run(collector.url, steps=4, seconds=1.0, delay=0.5, beat=1.0)
    started = time.monotonic()
    try:

        def running_now() -> list[dict[str, Any]]:
            spans = spans_of(collector, trace_id)
            names = {s["name"] for s in spans if s.get("running")}
            return spans if {"long-runner", "step"} <= names else []

        spans = collector.wait(running_now, timeout=10)
        assert time.monotonic() - started < 3.0  # the run takes 4 s: it shows while it runs
        root = next(s for s in spans if s["name"] == "long-runner")
        assert root["end_ns"] is None and root["agent"] == "long-runner"
        assert root["parent_id"] is None and root["kind"] == "AGENT"
        listed = collector.get("/api/v1/traces", running="true")["items"]
        assert [t["trace_id"] for t in listed] == [trace_id]
        # Midway: finished steps next to the running agent.
        collector.wait(
            lambda: (
                any(
                    s["name"] == "step" and not s.get("running")
                    for s in spans_of(collector, trace_id)
                )
                and any(
                    s["name"] == "long-runner" and s.get("running")
                    for s in spans_of(collector, trace_id)
                )
            ),
            timeout=10,
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "DONE"
        assert process.wait(10) == 0
    finally:
        process.kill()
    spans = collector.wait(
        lambda: (lambda got: got if len(got) == 5 and not any("running" in s for s in got) else [])(
            spans_of(collector, trace_id)
        ),
        timeout=10,
    )
    assert sorted(s["name"] for s in spans) == ["long-runner"] + ["step"] * 4
    assert all(s["end_ns"] is not None for s in spans)
    summary = collector.get("/api/v1/traces")["items"][0]
    assert summary["running"] is False and summary["span_count"] == 5
    assert live_rows(collector) == 0


def test_a_process_killed_with_9_leaves_its_spans_abandoned(collector):
    process, trace_id = start_run(collector.url, steps=30, seconds=0.4, delay=0.2, beat=0.3)
    try:
        collector.wait(
            lambda: any(
                s["name"] == "long-runner" and s.get("running")
                for s in spans_of(collector, trace_id)
            ),
            timeout=10,
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    killed_at = time.time_ns()

    def abandoned() -> list[dict[str, Any]]:
        spans = spans_of(collector, trace_id)
        root = next((s for s in spans if s["name"] == "long-runner"), None)
        return spans if root is not None and root.get("abandoned") else []

    spans = collector.wait(abandoned, timeout=10)
    root = next(s for s in spans if s["name"] == "long-runner")
    assert root["running"] is False and root["end_ns"] is None
    assert root["last_heartbeat_ns"] <= killed_at
    assert root["duration_ns"] == root["last_heartbeat_ns"] - root["start_ns"]
    listed = collector.get("/api/v1/traces", abandoned="true")["items"]
    assert [t["trace_id"] for t in listed] == [trace_id]
    assert listed[0]["abandoned"] is True and listed[0]["running"] is False


def test_a_plain_otlp_receiver_gets_only_finished_spans(tmp_path):
    with OTLPReceiver() as receiver:
        handle = plyra_trace.init(
            "live-plain", endpoint=receiver.url, console=False, live_delay=0.1, live_heartbeat=0.2
        )
        try:

            @plyra_trace.tool(name="slow")
            def slow() -> None:
                time.sleep(0.8)

            @plyra_trace.agent(name="plain-agent")
            def run() -> None:
                slow()
                slow()

            run()
            assert handle.force_flush()
        finally:
            handle.shutdown()
        # shutdown() joined the live thread: nothing else can arrive after this.
        spans = receiver.wait_for(lambda got: len(got) >= 3)
        assert sorted(s.name for s in receiver.spans) == ["plain-agent", "slow", "slow"]
        assert all(s.end_ns >= s.start_ns > 0 for s in spans)
        assert all("plyra.live.heartbeat_s" not in s.attributes for s in receiver.spans)
        assert {r[":path"] for r in receiver.requests} == {"/v1/traces"}


def test_live_true_sends_to_any_endpoint_and_live_false_never(tmp_path):
    with OTLPReceiver() as receiver:
        for live, expected in ((True, {"/v1/traces", "/v1/live"}), (False, {"/v1/traces"})):
            receiver.requests.clear()
            handle = plyra_trace.init(
                "live-forced",
                endpoint=receiver.url,
                console=False,
                live=live,
                live_delay=0.05,
                live_heartbeat=0.1,
            )
            with plyra_trace.SpanBuilder("held open", kind="AGENT"):
                if live:
                    receiver.wait_for(
                        lambda _: any(r[":path"] == "/v1/live" for r in receiver.requests)
                    )
                else:
                    pipeline = _process.router.pipeline
                    assert pipeline is not None
                    assert not any(isinstance(p, LiveSpanProcessor) for p in pipeline._processors)
            handle.shutdown()
            assert {r[":path"] for r in receiver.requests} == expected


def test_open_spans_are_tracked_in_bounded_memory():
    live = LiveSpanProcessor(
        "http://127.0.0.1:9/v1/traces", "http://127.0.0.1:9/v1/live", {}, max_open=3
    )
    provider = TracerProvider()
    provider.add_span_processor(live)
    spans = [provider.get_tracer("t").start_span(f"s{i}") for i in range(5)]
    assert len(live._open) == 3 and live.skipped == 2
    for span in spans:
        span.end()
    assert live._open == {}
    live.shutdown()


def test_an_ended_span_whose_end_was_missed_is_forgotten_and_never_announced():
    live = LiveSpanProcessor(
        "http://127.0.0.1:9/v1/traces", "http://127.0.0.1:9/v1/live", {}, delay=0, forced=True
    )
    span = TracerProvider().get_tracer("t").start_span("ended elsewhere")
    live.on_start(span)
    span.end()  # through another pipeline: this processor's on_end never runs
    assert len(live._open) == 1
    assert live.announce_due() == 0 and live._open == {}
    live.shutdown()
