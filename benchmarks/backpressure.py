"""Collector memory under many senders, with the in-flight budget and without it.

Starts ``plyra-trace serve`` twice in a subprocess, once with ``--max-inflight-mb`` (default 4)
and once with a budget too large to matter, and lets N senders (default 48, asyncio, one
connection each) post one ~2 MB OTLP/protobuf body each at the same moment, retrying a 503 after
its ``Retry-After``. Prints, per run: the collector's peak RSS over its baseline (VmHWM from
/proc), 503 answers, acknowledged spans (all of them must be stored) and the wall time; then the
ratio of the two peaks. On a busy machine absolute figures move; the ratio is the result.

Run: uv run python benchmarks/backpressure.py [--senders 48] [--budget-mb 4]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

SPANS = 1200  # x ~1.7 KB = a ~2 MB body
NOTE = "n" * 1500


def _body(sender: int) -> bytes:
    trace_id = (sender + 1).to_bytes(16, "big")
    now = time.time_ns()
    spans = [
        Span(
            trace_id=trace_id,
            span_id=(index + 1).to_bytes(8, "big"),
            parent_span_id=b"" if index == 0 else (1).to_bytes(8, "big"),
            name=f"op-{index % 7}",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1_000_000,
            attributes=[KeyValue(key="note", value=AnyValue(string_value=NOTE))],
        )
        for index in range(SPANS)
    ]
    resource = {"attributes": [KeyValue(key="service.name", value=AnyValue(string_value="bp"))]}
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def _send_all(url: str, senders: int) -> tuple[int, int]:
    """Every sender posts its body until acknowledged; returns (503 answers, spans acked)."""
    bodies = [_body(sender) for sender in range(senders)]
    throttled = 0
    acked = 0
    start = asyncio.Event()

    async def sender(body: bytes) -> None:
        nonlocal throttled, acked
        async with httpx.AsyncClient(timeout=60) as client:
            await start.wait()
            while True:
                reply = await client.post(
                    f"{url}/v1/traces",
                    content=body,
                    headers={"content-type": "application/x-protobuf"},
                )
                if reply.status_code == 200:
                    acked += SPANS
                    return
                if reply.status_code != 503:
                    raise RuntimeError(f"unexpected {reply.status_code}: {reply.text}")
                throttled += 1
                await asyncio.sleep(float(reply.headers["retry-after"]))

    tasks = [asyncio.create_task(sender(body)) for body in bodies]
    await asyncio.sleep(0)
    start.set()
    await asyncio.gather(*tasks)
    return throttled, acked


def _run(budget_mb: float, senders: int) -> dict[str, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "bp.db")
        args = ["--port", str(port), "--db", db, "--max-inflight-mb", str(budget_mb)]
        server = subprocess.Popen(
            [sys.executable, "-m", "plyra_trace", "serve", *args], stdout=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{url}/api/v1/health").raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            baseline = _kib(server.pid, "VmRSS")
            began = time.perf_counter()
            throttled, acked = asyncio.run(_send_all(url, senders))
            seconds = time.perf_counter() - began
            stored = httpx.get(f"{url}/api/v1/health").json()["spans"]
            if stored != acked:
                raise RuntimeError(f"{acked} spans acknowledged but {stored} stored")
            peak = _kib(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(15)
    return {
        "peak_over_baseline_mb": (peak - baseline) / 1024,
        "throttled": throttled,
        "acked": acked,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=48)
    parser.add_argument("--budget-mb", type=float, default=4.0)
    args = parser.parse_args()
    runs = {}
    for label, budget in (("budget", args.budget_mb), ("no budget", 1_000_000.0)):
        result = _run(budget, args.senders)
        runs[label] = result
        print(
            f"{label:>9} ({budget:g} MB): peak RSS +{result['peak_over_baseline_mb']:.0f} MB,"
            f" {result['throttled']:.0f} x 503, {result['acked']:.0f} spans acked and stored,"
            f" {result['seconds']:.1f} s"
        )
    ratio = runs["no budget"]["peak_over_baseline_mb"] / runs["budget"]["peak_over_baseline_mb"]
    print(f"peak memory growth without the budget / with it: {ratio:.1f}x")


if __name__ == "__main__":
    main()
