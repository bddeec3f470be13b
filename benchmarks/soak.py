"""Soak: a real ``plyra-trace serve`` under steady ingest and the UI's queries for N minutes.

Two sender processes post 512-span OTLP batches (paced, ``--rate`` spans/s each) while a thread
asks for the trace list, cost by model and session, and the agents graph, in a loop. Every
``--interval`` seconds it samples the collector's RSS, the SQLite WAL's size (0 on PostgreSQL)
and the queries' p95
over the interval, and prints a row. After ``--warmup`` seconds the RSS is the baseline; the run
fails (exit 1) when the median RSS of the last three samples exceeds it by more than
``--margin-mb``, or when the WAL passes 256 MB.

Run: uv run python benchmarks/soak.py [--minutes 30] [--store sqlite|postgres|postgresql://...]
     [--rate 2000] [--interval 10] [--warmup 120] [--margin-mb 24]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collector import BATCH, encode_batch, open_store  # benchmarks/collector.py

WAL_BOUND = 256 * 1024 * 1024
QUERIES = (
    ("/api/v1/traces", {"limit": 50}),
    ("/api/v1/cost", {"by": "model", "last": "24h"}),
    ("/api/v1/cost", {"by": "session", "last": "24h"}),
    ("/api/v1/agents/graph", {"last": "24h"}),
)


def _send(url: str, first_seed: int, rate: float, until: float) -> None:
    """Post batches at ``rate`` spans/s until the deadline (acknowledged or not)."""
    gap = BATCH / rate if rate > 0 else 0.0
    seed = first_seed
    with httpx.Client(timeout=60) as client:
        next_at = time.monotonic()
        while time.monotonic() < until:
            client.post(
                url,
                content=encode_batch(seed),
                headers={"content-type": "application/x-protobuf"},
            )
            seed += 2
            next_at += gap
            time.sleep(max(0.0, next_at - time.monotonic()))


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(f"{base}/api/v1/health", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("the collector did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def soak(args: argparse.Namespace, db: str) -> bool:
    """Run the soak against ``db``; True when memory stayed flat and the WAL bounded."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "plyra_trace", "serve", "--port", str(port), "--db", db],
        stdout=subprocess.DEVNULL,
    )
    stop = threading.Event()
    latencies: list[float] = []
    lock = threading.Lock()

    def query() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while not stop.is_set():
                for path, params in QUERIES:
                    started = time.perf_counter()
                    client.get(path, params=params).raise_for_status()
                    with lock:
                        latencies.append((time.perf_counter() - started) * 1000)
                stop.wait(0.1)

    try:
        _wait_ready(base, server)
        until = time.monotonic() + args.minutes * 60
        senders = [
            multiprocessing.Process(target=_send, args=(f"{base}/v1/traces", i, args.rate, until))
            for i in range(2)
        ]
        for sender in senders:
            sender.start()
        querier = threading.Thread(target=query, daemon=True)
        querier.start()
        started = time.monotonic()
        print(f"{'t (s)':>6} {'RSS MB':>8} {'WAL MB':>8} {'query p95 ms':>13} {'spans':>11}")
        samples: list[tuple[float, float, float]] = []
        while time.monotonic() < until:
            time.sleep(min(args.interval, max(0.0, until - time.monotonic())))
            with lock:
                window, latencies[:] = list(latencies), []
            p95 = statistics.quantiles(window, n=20)[-1] if len(window) >= 2 else float("nan")
            wal = os.path.getsize(db + "-wal") / 2**20 if os.path.exists(db + "-wal") else 0.0
            rss = _rss_mb(server.pid)
            spans = httpx.get(f"{base}/api/v1/health", timeout=30).json()["spans"]
            elapsed = time.monotonic() - started
            samples.append((elapsed, rss, wal))
            print(f"{elapsed:6.0f} {rss:8.1f} {wal:8.1f} {p95:13.1f} {spans:11,}", flush=True)
        stop.set()
        for sender in senders:
            sender.join()
        querier.join()
    finally:
        stop.set()
        server.terminate()
        server.wait(15)
    return _verdict(samples, args)


def _verdict(samples: list[tuple[float, float, float]], args: argparse.Namespace) -> bool:
    after = [rss for elapsed, rss, _ in samples if elapsed >= args.warmup]
    largest_wal = max((wal for _, _, wal in samples), default=0.0)
    if len(after) < 4:
        print("too short a run past the warm-up to judge memory")
        return False
    baseline = after[0]
    final = statistics.median(after[-3:])
    growth = final - baseline
    print(
        f"RSS after warm-up {baseline:.1f} MB, at the end {final:.1f} MB"
        f" (growth {growth:+.1f} MB, margin {args.margin_mb} MB); largest WAL {largest_wal:.1f} MB"
    )
    return growth <= args.margin_mb and largest_wal * 2**20 < WAL_BOUND


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--store", default="sqlite", help="sqlite, postgres or a postgresql:// URL")
    parser.add_argument(
        "--rate", type=float, default=2000.0, help="spans/s per sender, 0: flat out"
    )
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds before the baseline")
    parser.add_argument("--margin-mb", type=float, default=24.0, help="RSS growth allowed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db, cluster = open_store(args.store, f"{tmp}/soak.db")
        try:
            flat = soak(args, db)
        finally:
            if cluster is not None:
                cluster.close()
    print("memory flat after warm-up" if flat else "FAILED: memory grew or the WAL passed 256 MB")
    raise SystemExit(0 if flat else 1)


if __name__ == "__main__":
    main()
