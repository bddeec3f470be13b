"""Every snippet of the package page (our public contract), run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import respx

import plyra_trace

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("example", ["basic_agent.py", "multi_agent.py", "with_guard.py"])
def test_examples_run(example):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert "trace " in result.stderr  # the console tree
    assert "Traceback" not in result.stderr


def test_with_guard_example_blocks_dangerous_commands():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "with_guard.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.stdout.splitlines() == ["ran: list the files", "Blocked: content-safety"]
    assert "action=block" in result.stderr


def test_multi_agent_example_is_one_trace_with_handoffs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "multi_agent.py"), "--queries", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    trees = [line for line in result.stderr.splitlines() if line.startswith("trace ")]
    assert len(trees) == 1 and "7 spans" in trees[0]
    assert "from=orchestrator  reason=needs research  via=http" in result.stderr
    assert "via=in-process" in result.stderr
    assert "cost=$" in result.stderr


def test_context_managers_snippet(exporter):
    def run_agent(query):
        return plyra_trace.agent(name="a")(lambda q: q)(query)

    query = "q"
    with plyra_trace.session("session-id"):
        with plyra_trace.user("user-id"):
            with plyra_trace.metadata({"tier": "enterprise"}):
                with plyra_trace.tags(["production"]):
                    result = run_agent(query)
    assert result == "q"
    span = exporter.get_finished_spans()[0]
    assert span.attributes["session.id"] == "session-id"
    assert span.attributes["user.id"] == "user-id"
    assert span.attributes["metadata"] == '{"tier": "enterprise"}'
    assert tuple(span.attributes["tag.tags"]) == ("production",)


@respx.mock
def test_cross_process_snippets(exporter):
    seen = {}

    def agent_two(request: httpx.Request) -> httpx.Response:
        seen.update(request.headers)
        return httpx.Response(200, json={"ok": True})

    respx.post("http://agent-2/task").mock(side_effect=agent_two)
    payload = {"task": "research"}

    @plyra_trace.agent(name="orchestrator")
    def orchestrator():
        headers = {}
        plyra_trace.inject_context(
            headers, agent_name="orchestrator", handoff_reason="needs research"
        )
        response = httpx.post("http://agent-2/task", headers=headers, json=payload)
        return response.json()

    assert orchestrator() == {"ok": True}

    class Request:  # what the receiving framework hands over
        headers = seen
        body = payload

    request = Request()

    @plyra_trace.agent(name="agent-2")
    def process_task(body):
        return body

    ctx = plyra_trace.extract_context(request.headers)
    with plyra_trace.continue_trace(ctx):
        result = process_task(request.body)
    assert result == payload
    sender, receiver = exporter.get_finished_spans()
    assert receiver.context.trace_id == sender.context.trace_id
    assert receiver.attributes["agent.handoff.from"] == "orchestrator"
    assert receiver.attributes["agent.handoff.reason"] == "needs research"


def test_backend_snippets_initialise_without_a_reachable_backend():
    api_key = "secret"
    for pt in (
        plyra_trace.init(
            project="my-agent",
            endpoint="http://localhost:4318",
            protocol="http/protobuf",  # or "grpc"
        ),
        plyra_trace.init(
            project="my-agent",
            endpoint="https://otlp-gateway-prod-us-central-0.grafana.net/otlp",
            headers={"Authorization": f"Basic {api_key}"},
        ),
        plyra_trace.init(project="my-agent", endpoint="http://localhost:4318", protocol="grpc"),
    ):
        plyra_trace.trace(lambda: None)()
        pt.shutdown(timeout=2)


def test_openllmetry_snippet():
    from plyra_trace.compat import OpenLLMetrySpanProcessor

    pt = plyra_trace.init(
        project="my-agent",
        endpoint="http://localhost:4318",
        span_processors=[OpenLLMetrySpanProcessor()],
    )
    pt.shutdown(timeout=2)
