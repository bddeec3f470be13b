"""The multi-service demo: one command, four services, every request one trace in the collector."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples.multi_service import services
from examples.multi_service.run import SESSION_USERS
from plyra_trace.collector.model import TraceFilter
from plyra_trace.collector.storage import open_storage
from tests.collector.conftest import start_collector, stop_collector
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


def demo_processes(tmp_path: Path) -> list[str]:
    """Command lines of this checkout's demo services still running, and of the collector the
    demo started on a database under ``tmp_path``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if cwd != ROOT or any(arg.endswith("pytest") for arg in argv[:3]):
            continue
        cmdline = " ".join(argv)
        collector = "plyra_trace serve" in cmdline and str(tmp_path) in cmdline
        if collector or "examples.multi_service." in cmdline:
            found.append(cmdline)
    return found


def run_demo(tmp_path: Path, requests: int, *extra: str) -> Path:
    db = tmp_path / "collector.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "plyra_trace",
            "demo",
            "--requests",
            str(requests),
            "--exit",
            "--interval",
            "0",
            "--port",
            "0",  # any free port
            "--db",
            str(db),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "plyra-trace UI: http://127.0.0.1:" in result.stdout
    assert f"requests sent {requests:3d}" in result.stdout
    return db


def assert_one_trace_per_request(db: Path, requests: int) -> None:
    storage = open_storage(str(db))
    try:
        traces = storage.list_traces(TraceFilter(), None, 100).items
        assert len(traces) == requests
        for summary in traces:
            assert summary["root_name"] == "POST /ask"  # the gateway's last spans are not lost
            assert {"gateway", "researcher", "tools", "writer"} <= set(summary["services"])
            assert summary["cost"] is not None and summary["cost"] > 0
        users: dict[str, set[str]] = {}
        for summary in traces:  # one stable user per session, as in real traffic
            users.setdefault(summary["session_id"], set()).add(summary["user_id"])
        assert users == {session: {SESSION_USERS[session]} for session in users}
        graph = storage.agents_graph(None, None)
        edges = {(e["from"], e["to"], e["protocol"]): e["count"] for e in graph["edges"]}
        assert edges[("gateway", "researcher", "http")] == requests
        assert edges[("gateway", "writer", "queue")] == requests
        assert edges[("researcher", "tools", "mcp")] >= requests
        by_agent = {
            row["key"]: row["cost"] for row in storage.cost_breakdown("agent", None, None, 50)
        }
        assert all(by_agent.get(agent, 0) > 0 for agent in ("gateway", "researcher", "writer"))
        trace = storage.get_trace(traces[0]["trace_id"])
        assert trace is not None
        guards = [s for s in trace["spans"] if s["kind"] == "GUARD"]
        assert {g["name"] for g in guards} == {"input-policy", "output-policy"}
        decisions = set()
        for summary in traces:
            full = storage.get_trace(summary["trace_id"])
            for span in full["spans"] if full else []:
                if span["name"] == "output-policy":
                    detail = storage.get_span(summary["trace_id"], span["span_id"])
                    decisions.add(detail["attributes"]["guard.action"])
        assert {"allow", "redact", "block"} <= decisions
    finally:
        storage.close()


def test_compose_file_matches_the_demo_commands():
    assert (ROOT / "docker-compose.yml").read_text() == services.compose()


def test_compose_publishes_on_loopback_only_and_the_image_is_locked():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    published = [port for service in compose.values() for port in service.get("ports", [])]
    assert published == ["127.0.0.1:4318:4318"]
    collector = compose["collector"]["command"]
    assert collector[collector.index("--db") + 1].startswith("postgresql://")
    assert compose["postgres"]["image"] == "postgres:16" and compose["postgres"]["volumes"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"^RUN ((?:pip|uv) [^\n]*)", dockerfile, re.MULTILINE)
    assert installs[0].startswith('pip install --no-cache-dir "uv==')  # only uv itself
    assert all(line.startswith("uv sync --frozen") for line in installs[1:]), installs
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n.*/api/v1/health", dockerfile, re.MULTILINE)


def test_demo_one_trace_per_request_across_four_services(tmp_path):
    db = run_demo(tmp_path, 5)
    assert_one_trace_per_request(db, 5)
    time.sleep(0.5)
    assert demo_processes(tmp_path) == []
    if Path(CHROMIUM).exists():
        assert_trace_opens_in_the_browser(tmp_path)


def assert_trace_opens_in_the_browser(tmp_path: Path) -> None:
    """The demo's trace in the real UI (Debian chromium) shows all four services."""
    from playwright.sync_api import sync_playwright

    collector = start_collector(tmp_path)  # serves tmp_path/collector.db, the demo's database
    try:
        storage = open_storage(str(tmp_path / "collector.db"))
        trace_id = storage.list_traces(TraceFilter(), None, 1).items[0]["trace_id"]
        storage.close()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"{collector.url}/#/trace/{trace_id}")
            deadline = time.monotonic() + 20
            text = ""
            while time.monotonic() < deadline:
                text = page.inner_text("body")
                if "tools/call" in text and "run writer.write_answer" in text:
                    break
                time.sleep(0.2)
            browser.close()
        for service in ("gateway", "researcher", "tools", "writer"):
            assert service in text
        assert "POST /ask" in text and "tools/call search" in text
    finally:
        stop_collector(collector)


def test_demo_with_redis_as_the_broker(tmp_path, redis_url):
    db = run_demo(tmp_path, 5, "--redis", redis_url)
    assert_one_trace_per_request(db, 5)
    assert demo_processes(tmp_path) == []


def test_ctrl_c_twice_still_stops_every_service(tmp_path):
    """`uv run` forwards the terminal's Ctrl-C, so the demo gets two: none may leave a service."""
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plyra_trace",
            "demo",
            "--requests",
            "1",
            "--interval",
            "0",
            "--port",
            "0",  # any free port
            "--db",
            str(tmp_path / "collector.db"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    output = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            output.append(line)
            if "the UI stays up until Ctrl-C" in line:
                break
        running = " ".join(demo_processes(tmp_path))
        for service in ("gateway", "researcher", "tools", "writer"):
            assert f"examples.multi_service.{service}" in running, "".join(output)
        assert "plyra_trace serve" in running  # the collector is found too
        demo.send_signal(signal.SIGINT)
        time.sleep(0.2)  # the second one arrives while the first shutdown is under way
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 130, "".join(output) + demo.stdout.read()
    finally:
        if demo.poll() is None:  # the test failed: stop it the way that stops its services
            demo.terminate()
            try:
                demo.wait(60)
            except subprocess.TimeoutExpired:
                demo.kill()
    deadline = time.monotonic() + 5
    while demo_processes(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert demo_processes(tmp_path) == []
