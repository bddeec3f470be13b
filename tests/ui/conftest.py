"""A real collector filled by real SDK exports, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import plyra_trace
from tests.collector.conftest import Collector, start_collector, stop_collector
from tests.ui import _seed

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHARED_SESSION = "sess-ui-shared"
SHARED_USERS = ("bob", "carol")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and shutil.which("chromium") is None,
    reason="Chromium is not installed (apt-get install chromium); the UI tests need a real browser",
)


@dataclass
class Seeded:
    """The running collector, the SDK handle that exports to it and what was sent."""

    collector: Collector
    handle: plyra_trace.PlyraTrace
    planner_traces: list[str] = field(default_factory=list)
    xss_trace: str = ""
    failing_trace: str = ""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A collector on 127.0.0.1: two planner traces (one session), a hostile and a failing trace."""
    collector = start_collector(tmp_path_factory.mktemp("ui"))
    handle = plyra_trace.init(project="ui-test", endpoint=collector.url, console=False)
    try:
        with plyra_trace.session("sess-ui-1"), plyra_trace.user("alice"):
            _seed.run_planner("is this dangerous?")
            _seed.run_planner("plan a trip")
        _seed.run_xss()
        _seed.run_failing("order-7")
        with plyra_trace.session(SHARED_SESSION):  # one session, two users taking turns
            for user in SHARED_USERS:
                with plyra_trace.user(user):
                    _seed.run_chat_turn(f"hello from {user}")
        handle.force_flush()
        items = collector.wait(
            lambda: (lambda got: got if len(got) >= 6 else None)(
                collector.get("/api/v1/traces")["items"]
            ),
            timeout=20,
        )
        state = Seeded(collector, handle)
        state.planner_traces = [t["trace_id"] for t in items if t["root_name"] == "planner"]
        state.xss_trace = next(t["trace_id"] for t in items if t["root_name"] == _seed.XSS)
        state.failing_trace = next(t["trace_id"] for t in items if t["root_name"] == "fixer")
        yield state
    finally:
        handle.shutdown()
        stop_collector(collector)


@dataclass
class Browser:
    """A browser page plus everything it requested and every dialog it opened."""

    page: Any
    requests: list[str]
    dialogs: list[str]
    console_errors: list[str]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module (Playwright cannot download one here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser(chromium: Any, seeded: Seeded) -> Iterator[Browser]:
    """A fresh page (own context) that records requests, dialogs and console errors."""
    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    state = Browser(page, [], [], [])
    page.on("request", lambda request: state.requests.append(request.url))

    def _dialog(dialog: Any) -> None:
        state.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", _dialog)
    page.on(
        "console",
        lambda msg: state.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.on("pageerror", lambda error: state.console_errors.append(str(error)))
    yield state
    context.close()
    origin = seeded.collector.url
    leaving = [url for url in state.requests if not url.startswith(origin + "/")]
    assert leaving == [], f"requests left {origin}: {leaving}"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where page screenshots go (PLYRA_UI_ARTIFACTS, else a pytest temp directory)."""
    target = os.environ.get("PLYRA_UI_ARTIFACTS")
    path = Path(target) if target else tmp_path_factory.mktemp("ui-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_until(predicate: Any, timeout: float = 15.0) -> Any:
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)
