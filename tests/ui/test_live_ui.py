"""Live spans in a real browser: a running agent's bars grow in the waterfall with a running
badge, the list marks the trace as running, and the bars settle when the spans finish."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plyra_trace
from tests.collector.conftest import Collector, start_collector, stop_collector
from tests.ui.conftest import CHROMIUM, wait_until

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed"),
    pytest.mark.timeout(90),
]


@pytest.fixture
def live_collector(tmp_path: Path) -> Iterator[tuple[Collector, plyra_trace.PlyraTrace]]:
    collector = start_collector(tmp_path)
    handle = plyra_trace.init(
        "ui-live", endpoint=collector.url, console=False, live_delay=0.2, live_heartbeat=1.0
    )
    yield collector, handle
    handle.shutdown()
    stop_collector(collector)


def _seconds(text: str) -> float:
    match = re.match(r"([\d.]+) (ms|s)", text)
    assert match, text
    return float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)


def _width(row: Any) -> float:
    """The bar's width in pixels (rows are redrawn as bars grow: retry on a replaced element)."""
    box = wait_until(lambda: row.locator(".wf-bar").bounding_box(), timeout=5)
    return float(box["width"])


def test_a_running_bar_grows_then_finishes(live_collector: Any, chromium: Any) -> None:
    collector, handle = live_collector
    release = threading.Event()  # the tool runs until the test has watched its bar grow

    @plyra_trace.tool(name="long-search")
    def search() -> str:
        release.wait(30)
        return "found"

    @plyra_trace.agent(name="live-agent")
    def run() -> str:
        time.sleep(0.5)
        return search()

    worker = threading.Thread(target=run)
    worker.start()
    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        items = collector.wait(lambda: collector.get("/api/v1/traces", running="true")["items"])
        trace_id = items[0]["trace_id"]
        page.goto(f"{collector.url}/#/traces")
        page.wait_for_selector(f'tr[data-trace-id="{trace_id}"] .live-badge.running')

        page.goto(f"{collector.url}/#/trace/{trace_id}")
        tool = page.locator('.wf-row.running[data-kind="TOOL"]')
        tool.wait_for()  # the page redraws when the tool's start is announced
        assert page.locator(".summary .live-badge.running").count() == 1
        root_label = page.locator('.wf-row.running[data-kind="AGENT"] .wf-dur')
        assert "running" in page.locator('.wf-row[data-kind="AGENT"] .live-badge').inner_text()
        first = _seconds(root_label.inner_text())
        first_width = _width(tool)
        wait_until(lambda: _seconds(root_label.inner_text()) > first + 0.5, timeout=5)
        grown_width = _width(tool)
        assert grown_width > first_width  # the tool's bar grows as time passes

        release.set()
        worker.join(10)
        handle.force_flush()
        page.wait_for_selector(".wf-row", state="attached")
        wait_until(
            lambda: (
                page.locator(".wf-row").count() == 2
                and page.locator(".wf-row.running").count() == 0
            ),
            timeout=15,
        )
        assert page.locator(".live-badge").count() == 0
        final = _seconds(page.locator('.wf-row[data-kind="AGENT"] .wf-dur').inner_text())
        assert final > first + 0.5  # the finished span's duration, at least what ran live
    finally:
        release.set()
        worker.join(10)
        context.close()
