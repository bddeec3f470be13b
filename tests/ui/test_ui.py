"""The web UI in a real browser (Debian's Chromium via Playwright) against a real collector.

The collector is filled by real SDK exports (decorated agents, a guard, priced and unpriced LLM
calls, an in-process handoff, a hostile span); a 10,000-span trace is posted as OTLP protobuf.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.collector.conftest import make_request, make_span, tid
from tests.ui import _seed
from tests.ui.conftest import (
    CHROMIUM,
    SCREENSHOTS,
    SHARED_SESSION,
    SHARED_USERS,
    Browser,
    Seeded,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
)


def _open(browser: Browser, seeded: Seeded, fragment: str) -> Any:
    page = browser.page
    page.goto(f"{seeded.collector.url}/{fragment}")
    return page


def _shot(page: Any, artifacts: Path, name: str, docs: bool = False) -> None:
    """Save a screenshot as a test artifact (and into docs/img when asked to refresh them)."""
    page.screenshot(path=str(artifacts / f"{name}.png"))
    if docs and os.environ.get("PLYRA_UI_DOCS_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"ui-{name}.png"))


def _wait_js(page: Any, expression: str, timeout: float = 15) -> None:
    """Poll a page expression until truthy (the page's CSP forbids Playwright's eval-based wait)."""
    wait_until(lambda: page.evaluate(expression), timeout)


def _dangerous_trace(seeded: Seeded) -> str:
    """The planner trace whose guard was triggered (it ran first, so it is listed last)."""
    return seeded.planner_traces[-1]


def test_page_and_assets_carry_a_strict_csp(seeded: Seeded) -> None:
    for path in ("/", "/ui/app.js", "/ui/app.css"):
        response = httpx.get(seeded.collector.url + path)
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    html = httpx.get(seeded.collector.url + "/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script in index.html"
    assert "http://" not in html and "https://" not in html


def test_trace_list_shows_traces_and_updates_live(
    browser: Browser, seeded: Seeded, artifacts: Path
) -> None:
    page = _open(browser, seeded, "#/traces")
    for trace_id in seeded.planner_traces:
        page.wait_for_selector(f'tr[data-trace-id="{trace_id}"]')
    row = page.locator(f'tr[data-trace-id="{seeded.planner_traces[0]}"]')
    assert "planner" in row.inner_text() and "researcher" in row.inner_text()
    assert "unpriced" in row.inner_text()  # the unknown model's call is not priced as $0
    page.wait_for_selector('body[data-live="on"]')
    page.evaluate("window.__noReload = true")
    before = page.locator("tr[data-trace-id]").count()

    _seed.run_planner("a live one")
    seeded.handle.force_flush()
    _wait_js(page, f"document.querySelectorAll('tr[data-trace-id]').length > {before}", timeout=20)
    assert page.evaluate("window.__noReload") is True
    _shot(page, artifacts, "traces")


def test_waterfall_side_panel_guard_and_back_button(
    browser: Browser, seeded: Seeded, artifacts: Path
) -> None:
    trace_id = _dangerous_trace(seeded)
    page = _open(browser, seeded, "#/traces")
    page.click(f'tr[data-trace-id="{trace_id}"] a')
    page.wait_for_selector(".wf-row")
    assert trace_id in page.url
    rows = {
        page.locator(".wf-row").nth(i).locator(".wf-label").inner_text(): page.locator(".wf-row")
        .nth(i)
        .get_attribute("data-kind")
        for i in range(page.locator(".wf-row").count())
    }
    assert rows == {
        "planner": "AGENT",
        "input-safety": "GUARD",
        "researcher": "AGENT",
        "web-search": "TOOL",
        "chat gpt-4o": "LLM",
        "chat acme-unknown-model-9": "LLM",
    }
    handoff = page.locator(".wf-row", has_text="researcher").locator(".handoff")
    assert "planner → researcher" in handoff.inner_text()
    assert "in-process" in handoff.inner_text()

    page.locator(".wf-row", has_text="input-safety").click()
    guard = page.locator(".panel .guard")
    guard.wait_for()
    text = guard.inner_text()
    assert "BLOCK" in text and "triggered" in text
    assert "content-safety" in text and "0.93" in text and "true" in text
    assert "is this dangerous?" in page.locator(".panel .io-input").inner_text()
    assert '"action": "block"' in page.locator(".panel .io-output").inner_text()
    assert "span=" in page.url  # the selected span is part of the shareable URL

    page.locator(".wf-row", has_text="chat gpt-4o").click()
    page.wait_for_selector(".panel .llm-box")
    assert "gpt-4o" in page.locator(".panel .llm-box").inner_text()
    page.locator(".wf-row", has_text="chat acme").click()
    _wait_js(
        page,
        "document.querySelector('.panel .llm-box')?.innerText.includes('acme-unknown-model-9')",
    )
    assert "unpriced" in page.locator(".panel .llm-box").inner_text()

    # Collapsing the researcher hides its children.
    page.locator(".wf-row", has_text="researcher").locator("button.wf-caret").click()
    assert page.locator(".wf-row").count() == 3
    page.locator(".wf-row", has_text="researcher").locator("button.wf-caret").click()
    assert page.locator(".wf-row").count() == 6
    page.locator(".wf-row", has_text="input-safety").click()
    page.wait_for_selector(".panel .guard")
    _shot(page, artifacts, "trace", docs=True)

    # A shared link opens the same trace and span; the back button returns to the list.
    shared = page.url
    other = browser.page.context.new_page()
    other.goto(shared)
    other.wait_for_selector(".panel .guard")
    other.close()
    page.go_back()
    page.wait_for_selector(f'tr[data-trace-id="{trace_id}"]')
    assert "#/traces" in page.url


def test_trace_flamegraph_draws_zooms_and_searches(
    browser: Browser, seeded: Seeded, artifacts: Path
) -> None:
    page = _open(browser, seeded, f"#/trace/{_dangerous_trace(seeded)}?view=flame")
    page.wait_for_selector("canvas.flame-canvas[data-frames]")
    assert int(page.get_attribute("canvas.flame-canvas", "data-frames") or 0) == 7  # (all) + 6
    painted = page.evaluate(
        """() => { const c = document.querySelector('canvas.flame-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert painted > 1000
    box = page.locator("canvas.flame-canvas").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + 18 * 2 + 9)  # researcher (widest)
    _wait_js(page, "document.querySelector('.flame-info').textContent.startsWith('researcher')")
    page.fill(".flame-search", "gpt-4o")
    _wait_js(page, "document.querySelector('.flame-info').textContent.includes('1 match')")
    _shot(page, artifacts, "trace-flamegraph")


def test_agents_graph_shows_handoff_updates_live_and_lists_traces(
    browser: Browser, seeded: Seeded, artifacts: Path
) -> None:
    page = _open(browser, seeded, "#/agents")
    page.wait_for_selector('g.node[data-agent="planner"]')
    page.wait_for_selector('g.node[data-agent="researcher"]')
    edge = page.locator('g.edge[data-from="planner"][data-to="researcher"]')
    api_edge = seeded.collector.get("/api/v1/agents/graph")["edges"][0]
    label = edge.locator("text").text_content() or ""
    assert f"in-process · {api_edge['count']} calls" in label
    assert "p95" in label and "err 0%" in label and "cost $" in label
    page.wait_for_selector('body[data-live="on"]')

    _seed.run_planner("another handoff")
    seeded.handle.force_flush()
    _wait_js(
        page,
        "document.querySelector('g.edge[data-from=\"planner\"] text')"
        f".textContent.includes('{api_edge['count'] + 1} calls')",
        timeout=20,
    )
    _shot(page, artifacts, "agents", docs=True)

    edge.click()
    page.wait_for_selector(".agent-traces tr[data-trace-id]")
    listed = page.locator(".agent-traces tr[data-trace-id]").count()
    assert listed == api_edge["count"] + 1
    assert "from=planner" in page.url
    page.locator('g.node[data-agent="researcher"]').click()
    _wait_js(
        page, "document.querySelector('.agent-traces h2').textContent.includes('agent researcher')"
    )


def test_flamegraph_across_traces_of_an_agent(
    browser: Browser, seeded: Seeded, artifacts: Path
) -> None:
    page = _open(browser, seeded, "#/flame?agent=researcher&weight=tokens")
    page.wait_for_selector("canvas.flame-canvas[data-frames]")
    api = seeded.collector.get("/api/v1/flamegraph", agent="researcher", weight="tokens")
    assert f"{api['traces']} trace(s)" in page.inner_text("main")
    assert "(all)" in page.inner_text(".flame-info")
    assert f"{int(api['root']['value']):,} tokens" in page.inner_text(".flame-info")
    _shot(page, artifacts, "flamegraph")


def test_flamegraph_page_opens_on_the_most_recent_root(
    browser: Browser, seeded: Seeded, artifacts: Path
) -> None:
    newest = seeded.collector.get("/api/v1/traces", limit=1)["items"][0]["root_name"]
    page = _open(browser, seeded, "#/flame")
    page.wait_for_selector("canvas.flame-canvas[data-frames]")
    assert page.input_value('input[aria-label="root span name"]') == newest
    api = seeded.collector.get("/api/v1/flamegraph", root_name=newest)
    assert api["traces"] >= 1
    assert page.inner_text(".flame-status").startswith(f"{api['traces']} trace(s) merged")
    assert "(all)" in page.inner_text(".flame-info")
    hash_params = page.evaluate("new URLSearchParams(location.hash.split('?')[1]).get('root_name')")
    assert hash_params == newest  # the link is shareable
    other = page.locator(".recent-roots a").first  # the other recent roots are one click away
    other_root = other.inner_text()
    other.click()
    wait_until(lambda: page.input_value('input[aria-label="root span name"]') == other_root)
    page.wait_for_selector("canvas.flame-canvas[data-frames]")
    _shot(page, artifacts, "flamegraph-default")


def test_cost_page_totals_equal_the_api(browser: Browser, seeded: Seeded, artifacts: Path) -> None:
    page = _open(browser, seeded, "#/cost?by=model")
    page.wait_for_selector(".cost-table tr[data-key]")
    api = seeded.collector.get("/api/v1/cost", by="model")["items"]
    total = sum(item["cost"] for item in api if item["cost"] is not None)
    shown = float(page.get_attribute(".total-cost", "data-total") or "nan")
    assert shown == pytest.approx(total, rel=1e-12)
    tokens = sum(item["total_tokens"] for item in api)
    assert int(page.get_attribute(".total-tokens", "data-tokens") or -1) == tokens
    gpt = page.locator('.cost-table tr[data-key="gpt-4o"]').inner_text()
    assert "$" in gpt and "unpriced" not in gpt
    acme = page.locator('.cost-table tr[data-key="acme-unknown-model-9"] td.cost').inner_text()
    assert acme == "unpriced"
    _shot(page, artifacts, "cost")
    for dimension in ("agent", "session", "user", "day"):
        page.click(f"text=by {dimension}")
        _wait_js(page, f"location.hash.includes('by={dimension}')")
        page.wait_for_selector(".cost-table tr[data-key]")
        rows = seeded.collector.get("/api/v1/cost", by=dimension)["items"]
        assert page.locator(".cost-table tr[data-key]").count() == len(rows)


def test_sessions_page_lists_a_session_with_totals(
    browser: Browser, seeded: Seeded, artifacts: Path
) -> None:
    page = _open(browser, seeded, "#/sessions")
    page.click('tr[data-session="sess-ui-1"] a')
    page.wait_for_selector(".session-totals")
    traces = seeded.collector.get("/api/v1/sessions/sess-ui-1")["items"]
    assert page.locator("tr[data-trace-id]").count() == len(traces) == 2
    tokens = sum(t["total_tokens"] for t in traces)
    assert f"{tokens:,} tokens" in page.inner_text(".session-totals")
    starts = [t["start_ns"] for t in sorted(traces, key=lambda t: t["start_ns"])]
    ids = page.eval_on_selector_all("tr[data-trace-id]", "rows => rows.map(r => r.dataset.traceId)")
    assert ids == [next(t["trace_id"] for t in traces if t["start_ns"] == s) for s in starts]
    _shot(page, artifacts, "session")


def test_sessions_list_shows_each_sessions_users(browser: Browser, seeded: Seeded) -> None:
    page = _open(browser, seeded, "#/sessions")
    shared = f'tr[data-session="{SHARED_SESSION}"]'
    page.wait_for_selector(shared)
    for item in seeded.collector.get("/api/v1/sessions")["items"]:
        users = item.get("users") or ([item["user_id"]] if item["user_id"] else [])
        row = f'tr[data-session="{item["session_id"]}"] td.users'
        assert page.inner_text(row) == ", ".join(users)
        if "users" in item and item["session_id"] == SHARED_SESSION:
            assert sorted(item["users"]) == sorted(SHARED_USERS)
    page.click(f"{shared} td.users a")  # a user links to that user's traces
    page.wait_for_selector("tr[data-trace-id]")
    assert page.evaluate("location.hash").startswith("#/traces?user=")
    page.go_back()
    page.click(f"{shared} a")
    page.wait_for_selector(".session-totals")
    assert f"users {', '.join(SHARED_USERS)}" in page.inner_text(".session-totals")


def test_hostile_span_data_renders_as_text(browser: Browser, seeded: Seeded) -> None:
    page = _open(browser, seeded, "#/traces")
    page.wait_for_selector(f'tr[data-trace-id="{seeded.xss_trace}"]')
    assert _seed.XSS in page.inner_text(f'tr[data-trace-id="{seeded.xss_trace}"]')
    page.click(f'tr[data-trace-id="{seeded.xss_trace}"] a')
    page.wait_for_selector(".wf-row")
    page.locator(".wf-row").first.click()
    page.wait_for_selector(".panel .io-input")
    assert "<script>window.__pwned=1</script>" in page.inner_text(".panel .io-input")
    page.locator(".wf-row", has_text="attr-carrier").click()
    _wait_js(page, "document.querySelector('.panel').innerText.includes('evil')")
    assert _seed.XSS in page.inner_text(".panel table.attrs")
    page.goto(f"{seeded.collector.url}/#/agents")
    page.goto(f"{seeded.collector.url}/#/flame?root_name={_seed.XSS}")
    page.wait_for_selector("canvas.flame-canvas[data-frames]")
    page.wait_for_timeout(300)
    assert browser.dialogs == []
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('img, script:not([src])').length") == 0


def _ten_thousand_span_trace(seeded: Seeded) -> str:
    """One trace: a root, 99 agents, 100 tools under each (10,000 spans), posted as OTLP."""
    number = 0x5151
    spans = [make_span(number, 1, "big-root", start_ms=0, duration_ms=20_000)]
    next_id = 2
    for a in range(99):
        agent_id = next_id
        next_id += 1
        spans.append(
            make_span(number, agent_id, f"agent-{a}", 1, start_ms=a * 200, duration_ms=190)
        )
        for t in range(100):
            spans.append(
                make_span(
                    number,
                    next_id,
                    f"tool-{a}-{t}",
                    agent_id,
                    start_ms=a * 200 + t * 1.9,
                    duration_ms=1.5,
                    plyra__span__kind="TOOL",
                )
            )
            next_id += 1
    assert len(spans) == 10_000
    seeded.collector.post_request(make_request(spans, service="bulk"))
    trace_id = tid(number)
    seeded.collector.wait(
        lambda: (
            seeded.collector.api.get(f"/api/v1/traces/{trace_id}").status_code == 200
            and seeded.collector.trace(trace_id)["span_count"] == 10_000
        ),
        timeout=30,
    )
    return trace_id


def test_ten_thousand_span_trace_is_virtualised(
    browser: Browser, seeded: Seeded, artifacts: Path
) -> None:
    trace_id = _ten_thousand_span_trace(seeded)
    page = browser.page
    started = time.monotonic()
    page.goto(f"{seeded.collector.url}/#/trace/{trace_id}")
    page.wait_for_selector(".wf-row")
    page.wait_for_selector("main[data-render-ms]")
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"10,000-span trace took {elapsed:.1f}s to show"
    assert "10000 spans" in page.inner_text(".wf-axis")
    assert page.locator(".wf-row").count() <= 120  # virtualised: only rows near the viewport
    page.evaluate("document.querySelector('.wf-body').scrollTop = 1e9")
    page.wait_for_selector('.wf-row:has-text("tool-98-99")')
    assert page.locator(".wf-row").count() <= 120
    page.locator(".wf-row", has_text="tool-98-99").click()
    page.wait_for_selector(".panel .span-title:has-text('tool-98-99')")
    _shot(page, artifacts, "large-trace")

    # Find a span deep in the middle: Enter selects it and scrolls it into view.
    page.fill(".wf-search", "tool-50-50")
    wait_until(lambda: page.inner_text(".wf-found") == "1 match(es)")
    page.press(".wf-search", "Enter")
    page.wait_for_selector(".panel .span-title:has-text('tool-50-50')")
    page.wait_for_selector(".wf-row.selected.match:has-text('tool-50-50')")

    started = time.monotonic()
    page.goto(f"{seeded.collector.url}/#/trace/{trace_id}?view=flame")
    page.wait_for_selector("canvas.flame-canvas[data-frames]")
    assert time.monotonic() - started < 10
    assert int(page.get_attribute("canvas.flame-canvas", "data-frames") or 0) > 100


def test_dark_theme_toggles_and_persists(browser: Browser, seeded: Seeded) -> None:
    page = _open(browser, seeded, "#/traces")
    page.wait_for_selector("tr[data-trace-id]")
    first = page.evaluate("document.documentElement.dataset.theme")
    page.click("#theme")
    second = page.evaluate("document.documentElement.dataset.theme")
    assert {first, second} == {"light", "dark"}
    page.reload()
    page.wait_for_selector("tr[data-trace-id]")
    assert page.evaluate("document.documentElement.dataset.theme") == second


def test_a_collector_that_requires_keys_asks_for_one(
    chromium: Any, tmp_path: Path, seeded: Seeded
) -> None:
    """Loopback, no --open: once a key exists the page asks for it once, then runs on an
    HttpOnly, SameSite=Strict cookie; the key is in no URL and no browser storage."""
    from plyra_trace.collector.auth import create_key
    from plyra_trace.collector.storage import open_storage
    from tests.collector.conftest import start_collector, stop_collector

    storage = open_storage(str(tmp_path / "collector.db"))
    _, token = create_key(storage, "ui")
    storage.close()
    running = start_collector(tmp_path)
    running.api.headers["x-api-key"] = token  # a key exists, so ingest needs it too
    running.send(make_span(0x10C4, 1, "behind-a-key"))
    del running.api.headers["x-api-key"]
    context = chromium.new_context()
    requests: list[str] = []
    try:
        page = context.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.set_default_timeout(15_000)
        page.goto(f"{running.url}/#/traces")
        page.wait_for_selector(".key-form")
        assert page.locator("tr[data-trace-id]").count() == 0
        page.fill(".key-form input", "pt_wrong_key")
        page.click(".key-form button")
        page.wait_for_selector('.key-form .error-box:has-text("invalid API key")')
        page.fill(".key-form input", token)
        page.click(".key-form button")
        page.wait_for_selector(f'tr[data-trace-id="{tid(0x10C4)}"]')
        page.wait_for_selector('body[data-live="on"]')  # the stream authenticates by cookie
        assert page.locator(".key-form").count() == 0
        assert page.locator("#signout").is_visible()
        cookies = context.cookies()
        assert [c["name"] for c in cookies] == ["plyra_session"]
        assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"
        assert token not in cookies[0]["value"]
        assert page.evaluate("document.cookie") == ""  # HttpOnly: out of the page's reach
        stored = page.evaluate(
            "JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
        )
        assert token not in stored and token.rsplit("_", 1)[1] not in stored
        assert not [url for url in requests if token in url or "api_key" in url]
        page.reload()  # the session outlives the page: no second prompt
        page.wait_for_selector(f'tr[data-trace-id="{tid(0x10C4)}"]')
        page.click("#signout")
        page.wait_for_selector(".key-form")
        assert context.cookies() == []
    finally:
        context.close()
        stop_collector(running)


def test_errors_and_exceptions_are_visible(browser: Browser, seeded: Seeded) -> None:
    summary = seeded.collector.trace(seeded.failing_trace)
    page = _open(browser, seeded, "#/traces")
    row = page.locator(f'tr[data-trace-id="{seeded.failing_trace}"]')
    row.wait_for()
    assert summary["status"] in row.inner_text()
    page.goto(f"{seeded.collector.url}/#/trace/{seeded.failing_trace}")
    failed = page.locator(".wf-row.error")
    failed.wait_for()
    assert failed.count() == 1 and "flaky-api" in failed.inner_text()
    failed.click()
    exception = page.locator(".panel .exception")
    exception.wait_for()
    assert "ConnectionError" in exception.inner_text()
    assert "upstream refused order-7" in exception.inner_text()


def test_agent_chip_filters_the_trace_list(browser: Browser, seeded: Seeded) -> None:
    page = _open(browser, seeded, "#/traces")
    page.locator(f'tr[data-trace-id="{seeded.failing_trace}"] a.agent-tag').click()
    wait_until(lambda: "agent=fixer" in page.url)
    wait_until(lambda: page.locator("tr[data-trace-id]").count() == 1)
    assert page.locator(f'tr[data-trace-id="{seeded.failing_trace}"]').count() == 1
    assert page.input_value('input[name="agent"]') == "fixer"


def test_an_open_trace_redraws_when_late_spans_arrive(browser: Browser, seeded: Seeded) -> None:
    number = 0x7A7E
    seeded.collector.send(make_span(number, 1, "slow-root", duration_ms=50), service="front")
    trace_id = tid(number)
    seeded.collector.wait(lambda: seeded.collector.api.get(f"/api/v1/traces/{trace_id}").is_success)
    page = _open(browser, seeded, f"#/trace/{trace_id}")
    page.wait_for_selector(".wf-row")
    page.wait_for_selector('body[data-live="on"]')
    assert page.locator(".wf-row").count() == 1
    seeded.collector.send(
        make_span(number, 2, "late-child", 1, start_ms=10, duration_ms=20), service="back"
    )
    page.wait_for_selector('.wf-row:has-text("late-child")', timeout=20_000)
    child = page.locator(".wf-row", has_text="late-child")
    assert child.locator(".svc").inner_text() == "back"  # the service boundary is marked
