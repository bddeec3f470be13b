"""The live stream stays calm: a few coalesced updates per second per listener, bounded state."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time

import httpx

from plyra_trace.collector.events import INTERVAL_SECONDS, Broadcaster
from plyra_trace.collector.model import WriteResult
from tests.collector.conftest import make_request, make_span, tid

TRACES = 20
REQUESTS = 200


def _listen(url: str, updates: list[tuple[float, dict]], ready: threading.Event) -> None:
    try:
        with httpx.stream("GET", f"{url}/api/v1/stream", timeout=30) as response:
            kind = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "ready":
                    ready.set()
                elif line.startswith("data: "):
                    updates.append((time.monotonic(), json.loads(line[6:])))
    except httpx.TransportError:
        return  # the collector stopped at the end of the test


def test_a_steady_burst_reaches_each_listener_as_a_few_updates_a_second(collector):
    listeners = [([], threading.Event()) for _ in range(2)]
    for updates, ready in listeners:
        threading.Thread(target=_listen, args=(collector.url, updates, ready), daemon=True).start()
        assert ready.wait(5)
    started = time.monotonic()
    with httpx.Client(base_url=collector.url, timeout=10) as client:
        for number in range(REQUESTS):  # one committed write each, 20 traces growing
            trace, span = number % TRACES, number // TRACES + 1
            spans = [make_span(1000 + trace, span, f"s{span}", parent=1 if span > 1 else None)]
            body = make_request(spans).SerializeToString()
            reply = client.post(
                "/v1/traces", content=body, headers={"content-type": "application/x-protobuf"}
            )
            assert reply.status_code == 200
    sent = time.monotonic() - started
    for updates, _ in listeners:
        collector.wait(lambda u=updates: sum(update["spans"] for _, update in u) == REQUESTS)
        # 200 writes would have been 600 events before; now at most one update per interval.
        assert len(updates) < REQUESTS / 4, (len(updates), sent)
        span = max(updates[-1][0] - updates[0][0], INTERVAL_SECONDS)
        rate = (len(updates) - 1) / span
        assert rate <= 1.1 / INTERVAL_SECONDS, f"{rate:.1f} updates/s"
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(updates)]
        assert min(gaps, default=1.0) >= INTERVAL_SECONDS * 0.8
        latest: dict[str, int] = {}
        for _, update in updates:
            assert all("spans" not in trace for trace in update["traces"])
            for trace in update["traces"]:
                latest[trace["trace_id"]] = trace["span_count"]
        # Intermediate states may be dropped; the last one of every trace arrives.
        assert latest == {tid(1000 + t): REQUESTS // TRACES for t in range(TRACES)}


def test_a_listener_that_never_reads_holds_bounded_state():
    broadcaster = Broadcaster(limit=50)

    async def scenario() -> dict:
        listener = broadcaster.subscribe()

        def writer() -> None:  # the writer thread: 5,000 commits, never blocked
            for number in range(5000):
                broadcaster.publish_write(
                    WriteResult(
                        spans=1,
                        traces=[{"trace_id": f"t{number}", "span_count": 1}],
                        edges=[{"from": "a", "to": "b", "protocol": "http", "count": number}],
                    )
                )
                assert listener.pending <= 51

        thread = threading.Thread(target=writer)
        thread.start()
        await asyncio.to_thread(thread.join)
        await asyncio.wait_for(listener.ready.wait(), 5)
        update = listener.take()
        assert update is not None and listener.take() is None
        return update

    update = asyncio.run(scenario())
    assert update["spans"] == 5000 and update["truncated"] is True
    assert [t["trace_id"] for t in update["traces"]] == [f"t{n}" for n in range(4950, 5000)]
    assert update["edges"] == [{"from": "a", "to": "b", "protocol": "http", "count": 4999}]
