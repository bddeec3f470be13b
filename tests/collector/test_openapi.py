"""The OpenAPI document against a real collector: schemathesis' default checks on every operation.

The collector runs on 127.0.0.1 (uvicorn) with seeded traces, a session and a handoff, so the
fuzzer meets real answers (200 with data, 400, 401, 404, 413, 415) and each must be declared.
Schemathesis runs as its own command line (its supported entry point) in a subprocess, bounded
in examples per operation; ``_fuzz_hooks`` gives it the seeded ids and a real cursor.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from plyra_trace.collector.app import create_app
from plyra_trace.collector.config import CollectorConfig
from plyra_trace.collector.openapi import OPERATIONS
from tests.collector.conftest import Collector, make_span, sid, start_collector, stop_collector, tid

ROOT = Path(__file__).resolve().parents[2]
TRACE = tid(0xA1)
SPAN = sid(2)
SESSION = "s-1"
UNFUZZED = ("/api/v1/stream",)  # never ends: declared, but a fuzzer's request would not return
DOCUMENT = "/api/v1/openapi.json"  # schemathesis leaves out the operation that serves the schema


def _seed(collector: Collector) -> None:
    """Two traces in one session (two users), an agent handoff, a priced call, an error."""
    collector.send(
        make_span(0xA1, 1, "planner", session__id=SESSION, user__id="ada", agent__name="planner"),
        make_span(0xA1, 2, "research", parent=1, agent__name="researcher", llm__cost__total=0.02),
        service="api",
    )
    collector.send(
        make_span(0xA2, 1, "planner", session__id=SESSION, user__id="grace", error=True),
        service="api",
    )
    collector.wait(lambda: len(collector.get("/api/v1/traces")["items"]) == 2)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    collector = start_collector(tmp_path_factory.mktemp("openapi"), max_body_bytes=64 * 1024)
    try:
        _seed(collector)
        yield collector
    finally:
        stop_collector(collector)


@pytest.mark.timeout(300)  # about 20 s of CPU; far longer in wall time on shared cores
def test_schemathesis_default_checks_pass_on_every_operation(
    running: Collector, tmp_path: Path
) -> None:
    """Server errors, undeclared status codes, content types, headers and bodies all fail."""
    cursor = running.get("/api/v1/traces", limit=1)["next_cursor"]
    assert cursor
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.collector._fuzz_hooks",
        "PLYRA_FUZZ_TRACE": TRACE,
        "PLYRA_FUZZ_SPAN": SPAN,
        "PLYRA_FUZZ_SESSION": SESSION,
        "PLYRA_FUZZ_CURSOR": cursor,
        "NO_COLOR": "1",
    }
    command = [sys.executable, "-m", "schemathesis.cli", "run"]
    command += [f"{running.url}/api/v1/openapi.json", "--max-examples", "15", "--workers", "1"]
    command += ["--request-timeout", "5", "--suppress-health-check", "all"]
    command += ["--generation-database", "none"]  # each run from its own seed, printed on failure
    for path in UNFUZZED:
        command += ["--exclude-path", path]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280, check=False
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "No issues found" in report, report
    tested = re.search(r"Tested:\s+(\d+)", report)
    assert tested is not None, report
    spec = running.get(DOCUMENT)
    operations = sum(len(item) for item in spec["paths"].values())
    assert int(tested.group(1)) == operations - len(UNFUZZED) - 1, report


def test_seeded_answers_match_their_schemas(running: Collector) -> None:
    """Answers about stored data (ids a fuzzer cannot guess) validate against the document."""
    schema = schemathesis.openapi.from_url(f"{running.url}/api/v1/openapi.json")
    calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("/api/v1/traces", {}, {"session": SESSION}),
        ("/api/v1/traces/{id}", {"id": TRACE}, {}),
        ("/api/v1/traces/{id}/spans/{span_id}", {"id": TRACE, "span_id": SPAN}, {}),
        ("/api/v1/traces/{id}/flamegraph", {"id": TRACE.upper()}, {"weight": "cost"}),
        ("/api/v1/sessions", {}, {}),
        ("/api/v1/sessions/{session_id}", {"session_id": SESSION}, {}),
        ("/api/v1/flamegraph", {}, {"root_name": "planner"}),
        ("/api/v1/flamegraph", {}, {"agent": "researcher", "weight": "tokens"}),
        ("/api/v1/agents/graph", {}, {"last": "30d"}),
        ("/api/v1/cost", {}, {"by": "user"}),
        ("/api/v1/cost", {}, {"by": "day"}),
        ("/api/v1/facets", {}, {}),
        ("/api/v1/health", {}, {}),
        (DOCUMENT, {}, {}),
    ]
    for path, path_parameters, query in calls:
        case = schema[path]["GET"].Case(path_parameters=path_parameters, query=query)
        response = case.call_and_validate(timeout=10)
        assert response.status_code == 200, (path, response.text)
        assert response.json()  # not an empty answer


def test_every_api_route_has_a_declared_operation(tmp_path: Path) -> None:
    """A route added without an OPERATIONS entry would show up undocumented: declare it."""
    app = create_app(CollectorConfig(db_path=str(tmp_path / "c.db")))
    declared = set(OPERATIONS)
    for route in app.routes:
        path = getattr(route, "path", "")
        if not path.startswith(("/api/", "/v1/")):
            continue
        for method in sorted(set(getattr(route, "methods", None) or {"GET"}) - {"HEAD"}):
            assert (method, path) in declared, f"{method} {path} is not in openapi.OPERATIONS"


def test_document_states_the_enforced_formats(running: Collector) -> None:
    """The pieces a client reads: id patterns, enums, time formats, the root_name/agent pair."""
    spec = running.get("/api/v1/openapi.json")
    params = {
        (path, p["name"]): p
        for path, item in spec["paths"].items()
        for p in item.get("get", {}).get("parameters", [])
    }
    assert params[("/api/v1/traces/{id}", "id")]["schema"]["pattern"] == "^[0-9a-fA-F]{32}$"
    assert params[("/api/v1/cost", "by")]["schema"]["enum"][:2] == ["model", "agent"]
    assert params[("/api/v1/traces", "status")]["schema"]["enum"] == ["ok", "error"]
    assert params[("/api/v1/traces", "limit")]["schema"]["maximum"] == 500
    since = params[("/api/v1/traces", "since")]["schema"]["anyOf"]
    assert {"format": "date-time"}.items() <= since[1].items()
    target = params[("/api/v1/flamegraph", "target")]["schema"]["anyOf"]
    assert [branch["required"] for branch in target] == [["root_name"], ["agent"]]
    ingest = spec["paths"]["/v1/traces"]["post"]["responses"]
    assert {"200", "400", "401", "413", "415", "503"} <= set(ingest)
    assert ingest["503"]["$ref"].endswith("/OtlpUnavailable")  # OTLP's own error shape
    traces = spec["paths"]["/api/v1/traces"]["get"]["responses"]
    assert traces["503"]["$ref"].endswith("/Unavailable")
