"""kill -9 during ingest: every acknowledged span survives and the store stays usable.

On PostgreSQL two replicas share the database and only one is killed: the other keeps ingesting.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import httpx

from plyra_trace.collector.storage import is_postgres, open_storage
from tests.collector.conftest import make_request, make_span, tid
from tests.collector.serve_process import Served

SPANS_PER_BATCH = 200


def _batch(trace):
    spans = [make_span(trace, 1, "root")] + [
        make_span(trace, s, f"s{s}", parent=1) for s in range(2, SPANS_PER_BATCH + 1)
    ]
    return make_request(spans).SerializeToString()


def test_kill_9_during_ingest_loses_no_acknowledged_span(db):
    replicas = [Served(db) for _ in range(2 if is_postgres(db) else 1)]
    victim = replicas[0]
    assert b"plyra_trace.init(endpoint=" in victim.process.stdout.read1(4096)
    acknowledged: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(first, url):
        trace = first
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        f"{url}/v1/traces",
                        content=_batch(trace),
                        headers={"content-type": "application/x-protobuf"},
                    )
                except httpx.TransportError:
                    if url == victim.url:
                        return
                    continue
                if response.status_code == 200:
                    with lock:
                        acknowledged.append(trace)
                trace += 4

    senders = [
        threading.Thread(target=sender, args=(10_000 + i, replicas[i % len(replicas)].url))
        for i in range(4)
    ]
    for thread in senders:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(victim.process.pid, signal.SIGKILL)  # mid-ingest: every sender is still posting
    victim.process.wait(10)
    stop.set()
    for thread in senders:
        thread.join(10)
    for replica in replicas[1:]:
        replica.stop()
    with lock:
        acked = list(acknowledged)
    assert len(acked) >= 40

    if not is_postgres(db):
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    storage = open_storage(db)
    try:
        spans = storage.trace_spans([tid(t) for t in acked])
        counts: dict[str, int] = {}
        for span in spans:
            counts[span["trace_id"]] = counts.get(span["trace_id"], 0) + 1
        summaries = {t["trace_id"]: t["span_count"] for t in storage.trace_summaries(list(counts))}
    finally:
        storage.close()
    for trace in acked:
        assert counts.get(tid(trace)) == SPANS_PER_BATCH, f"acknowledged trace {trace} lost"
        assert summaries[tid(trace)] == SPANS_PER_BATCH

    # The store is usable by a fresh collector.
    fresh = Served(db)
    try:
        health = httpx.get(f"{fresh.url}/api/v1/health").json()
        assert health["spans"] >= len(acked) * SPANS_PER_BATCH
        response = httpx.post(
            f"{fresh.url}/v1/traces",
            content=_batch(1),
            headers={"content-type": "application/x-protobuf"},
        )
        assert response.status_code == 200
    finally:
        fresh.stop()
