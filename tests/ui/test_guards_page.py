"""The Guards page in a real browser: decisions by policy and action over time, the most blocked
agents, click-through to the traces (guard_policy / guard_action filters), a session's decisions.

The collector is filled through the SDK: the UI seed (an ``@guard`` that allows and blocks, in
session sess-ui-1), a real plyra-guard with a YAML policy and a guard with a hostile policy name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from plyra_guard import ActionGuard
from plyra_guard.exceptions import ExecutionBlockedError

import plyra_trace
from plyra_trace import GuardResult
from plyra_trace.integrations.plyra_guard import instrument
from tests.integrations.test_plyra_guard import POLICY
from tests.ui import _seed
from tests.ui.conftest import CHROMIUM, Browser, Seeded, wait_until

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def guarded(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """Add plyra-guard decisions (two blocks, one allow) and a hostile guard to the collector."""
    config = tmp_path_factory.mktemp("guard") / "guard.yaml"
    config.write_text(POLICY)
    guard = ActionGuard.from_config(str(config))
    instrument(guard)

    @guard.protect("file.read")
    def read_file(path: str) -> str:
        return path

    @plyra_trace.agent(name="archivist")
    def archive() -> None:
        read_file("/tmp/notes")
        for path in ("/etc/passwd", "/etc/shadow"):
            try:
                read_file(path)
            except ExecutionBlockedError:
                pass

    archive()
    with plyra_trace.SpanBuilder("hostile-guard", kind="GUARD") as span:
        span.set_guard(GuardResult(policy=_seed.XSS, action="flag", triggered=True))
    seeded.handle.force_flush()
    seeded.collector.wait(
        lambda: len(seeded.collector.get("/api/v1/guards", last="1h")["items"]) >= 5, timeout=20
    )
    return seeded


def _rows(page: Any) -> dict[tuple[str, str], str]:
    return {
        (row.get_attribute("data-policy"), row.get_attribute("data-action")): row.inner_text()
        for row in page.locator("table.guards tbody tr").all()
    }


def test_guards_page_shows_decisions_chart_blocked_agents_and_filters(
    browser: Browser, guarded: Seeded, artifacts: Path
) -> None:
    page = browser.page
    page.goto(f"{guarded.collector.url}/#/guards")
    page.wait_for_selector('table.guards tr[data-policy="no-system-files"]')
    rows = _rows(page)
    api = {
        (r["policy"], r["action"]): r
        for r in guarded.collector.get("/api/v1/guards", last="24h")["items"]
    }
    assert set(rows) == set(api)
    assert {("no-system-files", "block"), ("default", "allow"), ("content-safety", "block")} <= set(
        rows
    )
    assert (
        "2" in rows[("no-system-files", "block")]
        and "archivist" in rows[("no-system-files", "block")]
    )
    assert "plyra-guard" in rows[("no-system-files", "block")]
    # The hostile policy name is text, not markup.
    assert _seed.XSS in rows[(_seed.XSS, "flag")]
    assert browser.dialogs == [] and page.evaluate("document.querySelectorAll('img').length") == 0

    # The chart stacks every decision; the blocked agents list counts blocks per agent.
    bars = page.eval_on_selector_all("svg.series rect.bar", "rs => rs.map(r => +r.dataset.count)")
    assert sum(bars) == sum(r["count"] for r in api.values())
    blocked = page.eval_on_selector_all(".blocked-list li", "ls => ls.map(l => l.dataset.agent)")
    assert blocked[0] == "archivist" and "planner" in blocked
    page.screenshot(path=str(artifacts / "guards.png"))

    # Focusing one policy redraws the chart with its decisions only.
    page.select_option("select.policy-pick", "no-system-files")
    wait_until(lambda: "policy=no-system-files" in page.url)
    wait_until(
        lambda: (
            page.eval_on_selector_all("svg.series rect.bar", "rs => rs.map(r => +r.dataset.count)")
            == [2]
        )
    )

    # The provider filter narrows the rows.
    page.goto(f"{guarded.collector.url}/#/guards")
    page.wait_for_selector("table.guards")
    page.fill('input[name="provider"]', "plyra-guard")
    page.click("form.guard-filters button")
    wait_until(lambda: set(_rows(page)) == {("no-system-files", "block"), ("default", "allow")})


def test_a_guard_row_opens_the_traces_it_happened_in(browser: Browser, guarded: Seeded) -> None:
    page = browser.page
    page.goto(f"{guarded.collector.url}/#/guards")
    page.locator('table.guards tr[data-policy="content-safety"][data-action="block"] td').nth(
        2
    ).click()
    page.wait_for_selector("table.traces tr[data-trace-id]")
    assert "guard_policy=content-safety" in page.url and "guard_action=block" in page.url
    assert page.input_value('input[name="guard_policy"]') == "content-safety"
    shown = page.eval_on_selector_all("tr[data-trace-id]", "rs => rs.map(r => r.dataset.traceId)")
    expected = guarded.collector.get(
        "/api/v1/traces", guard_policy="content-safety", guard_action="block"
    )["items"]
    assert shown == [t["trace_id"] for t in expected] and len(shown) == 1
    # Back on the Guards page, the blocked-agent link filters the same way.
    page.go_back()
    page.locator('.blocked-list li[data-agent="archivist"] a').click()
    page.wait_for_selector("table.traces tr[data-trace-id]")
    assert page.input_value('input[name="guard_action"]') == "block"
    assert page.locator("tr[data-trace-id]").count() == 1


def test_a_session_lists_its_guard_decisions_in_time_order(
    browser: Browser, guarded: Seeded
) -> None:
    page = browser.page
    page.goto(f"{guarded.collector.url}/#/session/sess-ui-1")
    page.wait_for_selector(".session-guards tbody tr")
    actions = page.eval_on_selector_all(
        ".session-guards tbody tr", "rs => rs.map(r => r.dataset.action)"
    )
    decisions = guarded.collector.get("/api/v1/sessions/sess-ui-1/guards")["items"]
    assert actions == [d["action"] for d in decisions] == ["block", "allow"]
    page.locator(".session-guards tbody tr").first.locator("a").click()
    page.wait_for_selector(".panel .guard")
    assert "BLOCK" in page.inner_text(".panel .guard")
