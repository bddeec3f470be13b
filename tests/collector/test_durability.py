"""kill -9 during ingest: every acknowledged span survives and the database stays usable."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import httpx

from tests.collector.conftest import free_port, make_request, make_span, tid

SPANS_PER_BATCH = 200


def _start(db, port):
    process = subprocess.Popen(
        [sys.executable, "-m", "plyra_trace", "serve", "--port", str(port), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(process.stdout.read().decode() if process.stdout else "no output")


def _batch(trace):
    spans = [make_span(trace, 1, "root")] + [
        make_span(trace, s, f"s{s}", parent=1) for s in range(2, SPANS_PER_BATCH + 1)
    ]
    return make_request(spans).SerializeToString()


def test_kill_9_during_ingest_loses_no_acknowledged_span(tmp_path):
    db = tmp_path / "durable.db"
    port = free_port()
    process = _start(db, port)
    assert b"plyra_trace.init(endpoint=" in process.stdout.read1(4096)
    acknowledged: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(first):
        trace = first
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        f"http://127.0.0.1:{port}/v1/traces",
                        content=_batch(trace),
                        headers={"content-type": "application/x-protobuf"},
                    )
                except httpx.TransportError:
                    return
                if response.status_code == 200:
                    with lock:
                        acknowledged.append(trace)
                trace += 2

    senders = [threading.Thread(target=sender, args=(start,)) for start in (10_000, 10_001)]
    for thread in senders:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)  # mid-ingest: both senders are still posting
    process.wait(10)
    stop.set()
    for thread in senders:
        thread.join(10)
    with lock:
        acked = list(acknowledged)
    assert len(acked) >= 40

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = dict(
            conn.execute(
                "SELECT trace_id, COUNT(*) FROM spans WHERE trace_id IN (SELECT value FROM"
                " json_each(?)) GROUP BY trace_id",
                (str([tid(t) for t in acked]).replace("'", '"'),),
            ).fetchall()
        )
        summaries = dict(conn.execute("SELECT trace_id, span_count FROM traces").fetchall())
    finally:
        conn.close()
    for trace in acked:
        assert counts.get(tid(trace)) == SPANS_PER_BATCH, f"acknowledged trace {trace} lost"
        assert summaries[tid(trace)] == SPANS_PER_BATCH

    # The database is usable by a fresh collector.
    port = free_port()
    process = _start(db, port)
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health").json()
        assert health["spans"] >= len(acked) * SPANS_PER_BATCH
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/traces",
            content=_batch(1),
            headers={"content-type": "application/x-protobuf"},
        )
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(10)
