"""Collector ingest throughput over HTTP, against a plain SQLite insert of the same spans.

Starts ``plyra-trace serve`` in a subprocess, then sender processes post pre-encoded 512-span
OTLP/protobuf batches (16 traces x 32 spans, a quarter of them LLM spans with tokens to price) as
fast as acknowledgements come back. Prints acknowledged spans/s and, as a ceiling, how fast this
process inserts the same number of rows into a bare SQLite table (WAL, one transaction per
batch), plus API latencies (trace list, cost by model, agents graph) measured while ingest runs.
``--preload 1000000`` first stores that many spans (straight through the storage layer), so the
query latencies are those of a large database.

``--store postgres`` runs the same on a private PostgreSQL cluster started for the run (or
``--store postgresql://...`` on an existing database); ``--workers N`` serves with N processes
(PostgreSQL only). The collector's CPU seconds (all its processes) per 100k spans are printed: what
sizes a bigger machine. ``--expired N`` first stores N spans dated three days ago and serves with
``--retention-days 1``: the senders' slowest acknowledgement then shows the ingest stall while
retention deletes them (compare with the same run without ``--expired``).

Targets (2 cores): trace list p50 < 30 ms and cost/graph < 300 ms at 1M spans, during ingest;
>= 25k spans/s per process; retention stall < 200 ms.

Run: uv run python benchmarks/collector.py [--batches 200] [--senders 2] [--preload N]
     [--store sqlite|postgres|postgresql://...] [--workers N] [--expired N]
"""

from __future__ import annotations

import argparse
import dataclasses
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
from typing import Any

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


def encode_batch(seed: int, now: int | None = None) -> bytes:
    """One 512-span export request; ``seed`` makes its trace ids unique."""
    now = now if now is not None else time.time_ns()
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
    slowest = 0.0
    with httpx.Client(timeout=60) as client:
        started = time.perf_counter()
        for body in bodies:
            sent = time.perf_counter()
            response = client.post(
                url, content=body, headers={"content-type": "application/x-protobuf"}
            )
            slowest = max(slowest, time.perf_counter() - sent)
            if response.status_code == 200:
                acked += BATCH
        out.put((acked, started, time.perf_counter(), slowest))


QUERIES = {
    "trace list (limit 50)": ("/api/v1/traces", {"limit": 50}),
    "cost by model": ("/api/v1/cost", {"by": "model"}),
    "cost by session, last 24h": ("/api/v1/cost", {"by": "session", "last": "24h"}),
    "agents graph": ("/api/v1/agents/graph", {}),
    "agents graph, last 24h": ("/api/v1/agents/graph", {"last": "24h"}),
}


def _rollup_vs_base(db: str, repeat: int = 5) -> None:
    """In this process, on the run's database: cost by model and agent nodes from the roll-ups
    (whole window) against the same aggregation computed from the base tables only."""
    from plyra_trace.collector.storage import open_storage
    from plyra_trace.collector.storage._rollups import Window, dimension_rows

    storage = open_storage(db)
    whole, base = Window(None, None), Window(None, None)
    base.hours, base.partial = None, [(None, None)]
    timings: dict[str, list[float]] = {"roll-ups": [], "base tables": []}
    for _ in range(repeat):
        for name, window in (("roll-ups", whole), ("base tables", base)):
            started = time.perf_counter()
            with storage.engine.connect() as conn:  # type: ignore[attr-defined]
                for dimension in ("model", "agent", "session"):
                    dimension_rows(conn, dimension, window)
            timings[name].append((time.perf_counter() - started) * 1000)
    storage.close()
    fast, slow = statistics.median(timings["roll-ups"]), statistics.median(timings["base tables"])
    print(
        f"cost by model + agent + session, whole window, no ingest: roll-ups {fast:.1f} ms,"
        f" base tables {slow:.1f} ms (ratio {slow / max(fast, 1e-6):.0f}x)"
    )


def _preload(db: str, spans: int, age_ns: int = 0, first_seed: int = 2 * 10**8) -> None:
    """Store ``spans`` spans through the storage layer (as the writer would), before serving."""
    from plyra_trace.collector.config import CollectorConfig
    from plyra_trace.collector.normalise import Normaliser
    from plyra_trace.collector.pricing import Pricer
    from plyra_trace.collector.storage import open_storage

    normaliser = Normaliser(CollectorConfig(), Pricer())
    storage = open_storage(db)
    started = time.perf_counter()
    pending = []
    for seed in range(first_seed, first_seed + spans // BATCH):
        request = ExportTraceServiceRequest()
        request.ParseFromString(encode_batch(seed, time.time_ns() - age_ns))
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (uvicorn workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:  # fields[1] is the parent pid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


@dataclasses.dataclass
class _Run:
    acked: int
    elapsed: float
    slowest: float
    cpu: float
    latencies: dict[str, list[float]]


def _ingest(base: str, args: argparse.Namespace, pid: int, seed: int, query: bool) -> _Run:
    """Senders post their batches (queries running beside them when ``query``)."""
    out: multiprocessing.Queue = multiprocessing.Queue()
    senders = [
        multiprocessing.Process(
            target=_sender, args=(f"{base}/v1/traces", seed + i, args.senders, args.batches, out)
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

    cpu_before = _cpu_seconds(pid)
    for process in senders:
        process.start()
    querier = threading.Thread(target=_query, daemon=True)
    if query:
        querier.start()
    results = [out.get() for _ in senders]
    stop.set()
    for process in senders:
        process.join()
    if query:
        querier.join()
    return _Run(
        acked=sum(r[0] for r in results),
        elapsed=max(r[2] for r in results) - min(r[1] for r in results),
        slowest=max(r[3] for r in results),
        cpu=_cpu_seconds(pid) - cpu_before,
        latencies=latencies,
    )


def open_store(store: str, sqlite_path: str) -> tuple[str, Any]:
    """The ``--db`` value for ``--store`` and the private PostgreSQL cluster started for it."""
    if store == "sqlite":
        return sqlite_path, None
    if store != "postgres":
        return store, None
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.postgres_server import PostgresServer

    cluster = PostgresServer()
    return cluster.database(), cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=200, help="batches per sender")
    parser.add_argument("--senders", type=int, default=2, help="sender processes")
    parser.add_argument("--preload", type=int, default=0, help="spans stored before the run")
    parser.add_argument("--store", default="sqlite", help="sqlite, postgres or a postgresql:// URL")
    parser.add_argument("--workers", type=int, default=1, help="collector processes")
    parser.add_argument("--expired", type=int, default=0, help="3-day-old spans to retain away")
    parser.add_argument(
        "--quiet-first",
        action="store_true",
        help="first ingest with no queries running: prints the ingest drop the queries cause",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db, cluster = open_store(args.store, f"{tmp}/bench.db")
        if args.preload:
            _preload(db, args.preload)
        if args.expired:
            _preload(db, args.expired, age_ns=3 * 86_400 * 10**9, first_seed=3 * 10**8)
        port = _free_port()
        extra = ["--workers", str(args.workers)] if args.workers > 1 else []
        extra += ["--retention-days", "1"] if args.expired else []
        server = subprocess.Popen(
            [sys.executable, "-m", "plyra_trace", "serve", "--port", str(port), "--db", db, *extra],
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
            quiet_rate = None
            if args.quiet_first:
                quiet = _ingest(base, args, server.pid, 10**7, query=False)
                quiet_rate = quiet.acked / quiet.elapsed
            run = _ingest(base, args, server.pid, 0, query=True)
            acked, elapsed, slowest, cpu, latencies = (
                run.acked,
                run.elapsed,
                run.slowest,
                run.cpu,
                run.latencies,
            )
            stored = httpx.get(f"{base}/api/v1/health").json()["spans"]
        finally:
            server.terminate()
            server.wait(10)
            if cluster is not None:
                cluster.close()
        baseline = _sqlite_baseline(Path(tmp) / "baseline.db", acked)
        if not db.startswith("postgresql"):
            _rollup_vs_base(db)
    rate = acked / elapsed
    print(
        f"cores: {os.cpu_count()}, senders: {args.senders}, batch: {BATCH} spans,"
        f" store: {args.store}, workers: {args.workers}"
    )
    print(f"collector CPU: {cpu / acked * 100_000:.1f} s per 100k spans")
    expired = f" (retention deleting {args.expired:,} expired spans)" if args.expired else ""
    print(f"slowest acknowledgement: {slowest * 1000:.0f} ms{expired}")
    print(
        f"collector ingest over HTTP: {rate:,.0f} spans/s"
        f" ({acked:,} acknowledged, {stored:,} stored)"
    )
    if quiet_rate:
        print(
            f"ingest with no queries running: {quiet_rate:,.0f} spans/s;"
            f" drop while queries run: {(1 - rate / quiet_rate) * 100:.0f}%"
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
