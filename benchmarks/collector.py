"""Collector ingest throughput over HTTP, against a plain SQLite insert of the same spans.

Starts ``plyra-trace serve`` in a subprocess, then sender processes post pre-encoded 512-span
OTLP/protobuf batches (16 traces x 32 spans, a quarter of them LLM spans with tokens to price) as
fast as acknowledgements come back. Prints acknowledged spans/s and, as a ceiling, how fast this
process inserts the same number of rows into a bare SQLite table (WAL, one transaction per
batch), plus API latencies (trace list, cost by model, agents graph) measured while ingest runs.
``--preload 1000000`` first stores that many spans (straight through the storage layer), so the
query latencies are those of a large database.

Targets (2 cores): trace list p50 < 30 ms and cost/graph < 300 ms at 1M spans, during ingest.

Run: uv run python benchmarks/collector.py [--batches 200] [--senders 2] [--preload N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

TRACES_PER_BATCH = 16
SPANS_PER_TRACE = 32
BATCH = TRACES_PER_BATCH * SPANS_PER_TRACE


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def encode_batch(seed: int) -> bytes:
    """One 512-span export request; ``seed`` makes its trace ids unique."""
    now = time.time_ns()
    spans = []
    for t in range(TRACES_PER_BATCH):
        trace_id = (seed * TRACES_PER_BATCH + t + 1).to_bytes(16, "big")
        for s in range(1, SPANS_PER_TRACE + 1):
            attrs = [_kv("plyra.span.kind", "TOOL"), _kv("agent.name", f"agent-{s % 4}")]
            if s % 4 == 0:
                attrs = [
                    _kv("plyra.span.kind", "LLM"),
                    _kv("llm.model_name", "gpt-4o-mini" if s % 8 else "claude-sonnet-4-5"),
                    _kv("llm.token_count.prompt", 100 + s),
                    _kv("llm.token_count.completion", 20 + s),
                ]
            if s == 2:
                attrs += [_kv("agent.handoff.from", "agent-1"), _kv("agent.handoff.to", "agent-2")]
            spans.append(
                Span(
                    trace_id=trace_id,
                    span_id=s.to_bytes(8, "big"),
                    parent_span_id=(s - 1).to_bytes(8, "big") if s > 1 else b"",
                    name=f"step-{s % 6}",
                    kind=Span.SPAN_KIND_INTERNAL,
                    start_time_unix_nano=now + s * 1000,
                    end_time_unix_nano=now + s * 1000 + 500_000,
                    attributes=attrs,
                )
            )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [_kv("service.name", "bench")]},
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )
    return request.SerializeToString()


def _sender(
    url: str, first_seed: int, stride: int, batches: int, out: multiprocessing.Queue
) -> None:
    bodies = [encode_batch(first_seed + i * stride) for i in range(batches)]
    acked = 0
    with httpx.Client(timeout=60) as client:
        started = time.perf_counter()
        for body in bodies:
            response = client.post(
                url, content=body, headers={"content-type": "application/x-protobuf"}
            )
            if response.status_code == 200:
                acked += BATCH
        out.put((acked, started, time.perf_counter()))


QUERIES = {
    "trace list (limit 50)": ("/api/v1/traces", {"limit": 50}),
    "cost by model": ("/api/v1/cost", {"by": "model"}),
    "agents graph": ("/api/v1/agents/graph", {}),
}


def _preload(path: Path, spans: int) -> None:
    """Store ``spans`` spans through the storage layer (as the writer would), before serving."""
    from plyra_trace.collector.config import CollectorConfig
    from plyra_trace.collector.normalise import Normaliser
    from plyra_trace.collector.pricing import Pricer
    from plyra_trace.collector.storage.sqlite import SQLiteStorage

    normaliser = Normaliser(CollectorConfig(), Pricer())
    storage = SQLiteStorage(str(path))
    started = time.perf_counter()
    pending = []
    for seed in range(2 * 10**8, 2 * 10**8 + spans // BATCH):
        request = ExportTraceServiceRequest()
        request.ParseFromString(encode_batch(seed))
        pending += normaliser.request(request).spans
        if len(pending) >= 16 * BATCH:
            storage.write(pending)
            pending = []
    storage.write(pending)
    print(f"preloaded {storage.count_spans():,} spans in {time.perf_counter() - started:.0f} s")
    storage.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sqlite_baseline(path: Path, spans: int) -> float:
    """Rows/s for a bare executemany insert of 30-column rows, one transaction per 512 rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    columns = ", ".join(f"c{i}" for i in range(30))
    conn.execute(f"CREATE TABLE spans ({columns}, PRIMARY KEY (c0, c1)) WITHOUT ROWID")
    insert = f"INSERT INTO spans VALUES ({', '.join('?' * 30)})"
    rows = [(f"{i // 32:032x}", f"{i:016x}", "p", "step", *range(26)) for i in range(spans)]
    started = time.perf_counter()
    for offset in range(0, spans, BATCH):
        conn.execute("BEGIN")
        conn.executemany(insert, rows[offset : offset + BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return spans / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=200, help="batches per sender")
    parser.add_argument("--senders", type=int, default=2, help="sender processes")
    parser.add_argument("--preload", type=int, default=0, help="spans stored before the run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.preload:
            _preload(Path(tmp) / "bench.db", args.preload)
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plyra_trace",
                "serve",
                "--port",
                str(port),
                "--db",
                f"{tmp}/bench.db",
            ],
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    httpx.get(f"{base}/api/v1/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            httpx.post(  # warm up: price table and connections
                f"{base}/v1/traces",
                content=encode_batch(10**9),
                headers={"content-type": "application/x-protobuf"},
                timeout=60,
            )
            out: multiprocessing.Queue = multiprocessing.Queue()
            senders = [
                multiprocessing.Process(
                    target=_sender, args=(f"{base}/v1/traces", i, args.senders, args.batches, out)
                )
                for i in range(args.senders)
            ]
            latencies: dict[str, list[float]] = {name: [] for name in QUERIES}
            stop = threading.Event()

            def _query() -> None:
                with httpx.Client(base_url=base, timeout=60) as client:
                    while not stop.is_set():
                        for name, (path, params) in QUERIES.items():
                            started = time.perf_counter()
                            client.get(path, params=params).raise_for_status()
                            latencies[name].append((time.perf_counter() - started) * 1000)
                        time.sleep(0.05)

            for process in senders:
                process.start()
            querier = threading.Thread(target=_query, daemon=True)
            querier.start()
            results = [out.get() for _ in senders]
            stop.set()
            for process in senders:
                process.join()
            querier.join()
            acked = sum(r[0] for r in results)
            elapsed = max(r[2] for r in results) - min(r[1] for r in results)
            stored = httpx.get(f"{base}/api/v1/health").json()["spans"]
        finally:
            server.terminate()
            server.wait(10)
        baseline = _sqlite_baseline(Path(tmp) / "baseline.db", acked)
    rate = acked / elapsed
    print(f"cores: {os.cpu_count()}, senders: {args.senders}, batch: {BATCH} spans")
    print(
        f"collector ingest over HTTP: {rate:,.0f} spans/s"
        f" ({acked:,} acknowledged, {stored:,} stored)"
    )
    print(f"bare sqlite executemany in one process: {baseline:,.0f} rows/s")
    print(f"ratio collector / bare sqlite: {rate / baseline:.2f}")
    stored_note = f" ({args.preload:,} spans preloaded)" if args.preload else ""
    for name, values in latencies.items():
        if values:
            p50 = statistics.median(values)
            p95 = statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)
            print(f"{name} during ingest{stored_note}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")


if __name__ == "__main__":
    main()
