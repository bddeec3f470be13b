"""The UI marks sampled-out traces, says why a trace was kept and shows the sampling panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plyra_trace.collector.sampling import make_policy
from tests.collector.conftest import make_span, start_collector, stop_collector, tid
from tests.ui.conftest import pytestmark as pytestmark  # skipped without Chromium


def test_sampled_out_traces_are_marked(chromium: Any, tmp_path: Path) -> None:
    policy = make_policy(sample_rate=0.0, decision_wait=0.2)
    running = start_collector(tmp_path, sampling=policy)
    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    try:
        running.send(make_span(1, 1, "ordinary-run"), make_span(1, 2, "step", parent=1))
        running.send(make_span(2, 1, "failing-run"), make_span(2, 2, "tool", parent=1, error=True))
        running.wait(lambda: running.get("/api/v1/sampling")["dropped"] == 1)
        running.wait(lambda: running.get("/api/v1/sampling")["kept"] == 1)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{running.url}/#/traces")
        dropped = page.locator(f'tr[data-trace-id="{tid(1)}"]')
        dropped.locator(".sampled-out").wait_for()
        assert dropped.get_attribute("data-sampled") == "false"
        kept = page.locator(f'tr[data-trace-id="{tid(2)}"]')
        assert kept.get_attribute("data-sampled") == "true"
        assert kept.locator(".sampled-out").count() == 0
        panel = page.locator(".sampling-panel")
        assert "1 kept" in panel.inner_text()
        assert "1 sampled out" in panel.inner_text()

        dropped.locator("a").first.click()
        page.wait_for_selector(".sampled-note")
        assert "sampled out" in page.locator(".summary").inner_text()
        assert "2 spans" in page.locator(".summary").inner_text()  # the summary stays exact
        assert page.locator(".waterfall").count() == 0

        page.goto(f"{running.url}/#/trace/{tid(2)}")
        page.wait_for_selector(".waterfall")
        assert page.locator(".kept-because").inner_text() == "kept: error"
        assert page.locator(".sampled-note").count() == 0
    finally:
        context.close()
        stop_collector(running)
