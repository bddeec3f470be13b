"""A Celery task in a real prefork worker shows in the collector while it runs (live spans from
the forked child), then as its finished spans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.collector.conftest import Collector, start_collector, stop_collector
from tests.integrations.celery_app import SLOW, make_app
from tests.integrations.test_celery_prefork import start_worker

pytestmark = pytest.mark.timeout(90)


def _spans(collector: Collector) -> list[dict[str, Any]]:
    items = collector.get("/api/v1/traces")["items"]
    return collector.trace(items[0]["trace_id"])["spans"] if items else []


def test_a_task_in_a_prefork_child_shows_while_it_runs(tmp_path: Path) -> None:
    (tmp_path / "collector").mkdir()
    collector = start_collector(tmp_path / "collector")
    worker = start_worker(tmp_path, collector.url)
    try:
        result = make_app(str(tmp_path)).send_task(SLOW, args=[3.0])

        def running() -> list[dict[str, Any]]:
            spans = _spans(collector)
            names = {s["name"] for s in spans if s.get("running")}
            return spans if {f"run {SLOW}", "slow-writer"} <= names else []

        spans = collector.wait(running, timeout=15)
        assert not result.ready()  # seen while the task still runs
        run = next(s for s in spans if s["name"] == f"run {SLOW}")
        agent = next(s for s in spans if s["name"] == "slow-writer")
        assert run["otel_kind"] == "CONSUMER" and run["service"] == "writer"
        assert agent["parent_id"] == run["span_id"] and agent["end_ns"] is None
        assert result.get(timeout=20, interval=0.05) == "drafted"
        finished = collector.wait(
            lambda: (lambda got: got if got and not any("running" in s for s in got) else [])(
                _spans(collector)
            ),
            timeout=15,
        )
        assert sorted(s["name"] for s in finished) == [f"run {SLOW}", "slow-writer"]
    finally:
        code = worker.stop()
        stop_collector(collector)
    assert code == 0, worker.output()
