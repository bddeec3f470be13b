"""Web UI speed in a real browser (Debian's Chromium through Playwright).

Fills a collector (uvicorn in-process, temp SQLite) with ``--traces`` one-span traces plus one
10,000-span trace, all posted as OTLP/protobuf, then measures in headless Chromium: the trace list
page with that many traces stored, the 10,000-span waterfall (first rows drawn), a scroll to its
last span, and its flamegraph. Each figure is the median of ``--repeat`` page loads.

Run: uv run python benchmarks/ui.py [--traces 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from playwright.sync_api import Page, sync_playwright

from plyra_trace.collector.app import create_app
from plyra_trace.collector.config import CollectorConfig

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BIG_TRACE = (0xB16).to_bytes(16, "big")


def _span(trace: bytes, span: int, name: str, parent: int | None, start: int, dur: int) -> Span:
    return Span(
        trace_id=trace,
        span_id=span.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + dur,
        attributes=[KeyValue(key="plyra.span.kind", value=AnyValue(string_value="TOOL"))],
    )


def _post(client: httpx.Client, spans: list[Span]) -> None:
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value="bench"))]
                ),
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )
    response = client.post(
        "/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    response.raise_for_status()


def _fill(client: httpx.Client, traces: int) -> None:
    now = time.time_ns() - 3600 * 10**9
    batch: list[Span] = []
    for number in range(1, traces + 1):
        trace = (number + 0x100000).to_bytes(16, "big")
        batch.append(_span(trace, 1, f"request-{number % 50}", None, now + number * 1000, 5000))
        if len(batch) == 5000:
            _post(client, batch)
            batch = []
    if batch:
        _post(client, batch)
    big = [_span(BIG_TRACE, 1, "big-root", None, now, 20 * 10**9)]
    span_id = 2
    for a in range(99):
        agent = span_id
        big.append(_span(BIG_TRACE, agent, f"agent-{a}", 1, now + a * 2 * 10**8, 19 * 10**7))
        span_id += 1
        for t in range(100):
            start = now + a * 2 * 10**8 + t * 19 * 10**5
            big.append(_span(BIG_TRACE, span_id, f"tool-{a}-{t}", agent, start, 15 * 10**5))
            span_id += 1
    _post(client, big)


def _timed(page: Page, url: str, selector: str) -> float:
    page.goto("about:blank")
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(selector, timeout=60_000)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    """Fill, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    db = Path(tempfile.mkdtemp()) / "ui-bench.db"
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(CollectorConfig(db_path=str(db), port=port)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=120) as client:
        started = time.perf_counter()
        _fill(client, options.traces)
        big_id = BIG_TRACE.hex()
        while client.get(f"/api/v1/traces/{big_id}").status_code != 200:
            time.sleep(0.1)
        print(
            f"stored {options.traces:,} traces + one 10,000-span trace in "
            f"{time.perf_counter() - started:.1f} s"
        )
    results: dict[str, list[float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        for _ in range(options.repeat):
            results.setdefault("trace list (first page)", []).append(
                _timed(page, f"{base}/#/traces", "tr[data-trace-id]")
            )
            results.setdefault("10,000-span waterfall", []).append(
                _timed(page, f"{base}/#/trace/{big_id}", "main[data-render-ms] .wf-row")
            )
            started = time.perf_counter()
            page.evaluate("document.querySelector('.wf-body').scrollTop = 1e9")
            page.wait_for_selector('.wf-row:has-text("tool-98-99")')
            results.setdefault("scroll to the last span", []).append(
                (time.perf_counter() - started) * 1000
            )
            rows = page.locator(".wf-row").count()
            results.setdefault("10,000-span flamegraph", []).append(
                _timed(page, f"{base}/#/trace/{big_id}?view=flame", "canvas[data-frames]")
            )
        browser.close()
    server.should_exit = True
    print(f"DOM rows for the 10,000-span waterfall: {rows}")
    for name, values in results.items():
        print(f"{name:32s} median {statistics.median(values):8.1f} ms  (n={len(values)})")


if __name__ == "__main__":
    main()
