"""Tail sampling with real collector processes on both stores: an OTLP mix sent to a sampling
collector and to one without, exact totals, session stickiness, kill -9 during the decision wait."""

from __future__ import annotations

import math
import os
import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from plyra_trace.collector.sampling import in_rate
from tests.collector.conftest import another_store, make_request, make_span
from tests.collector.serve_process import Served

RATE = 0.3
LLM = {
    "llm__model_name": "gpt-4o",
    "llm__token_count__prompt": 1000,
    "llm__token_count__completion": 200,
}
AGENTS = ("planner", "researcher", "writer")


class Serve(Served):
    """A ``plyra-trace serve`` process and an API client for it."""

    def __init__(self, db, *args):
        super().__init__(str(db), *args)
        self.api = httpx.Client(base_url=self.url, timeout=10)

    def send(self, spans):
        response = self.api.post(
            "/v1/traces",
            content=make_request(spans).SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert response.status_code == 200, response.text

    def get(self, path, **params):
        response = self.api.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def all_traces(self):
        items, cursor = [], None
        while True:
            page = self.get("/api/v1/traces", limit=500, **({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return {row["trace_id"]: row for row in items}

    def decided(self, count):
        def done():
            stats = self.get("/api/v1/sampling")
            return (
                stats
                if stats["pending"] == 0 and stats["kept"] + stats["dropped"] >= count
                else None
            )

        deadline_stats = _wait(done)
        return deadline_stats

    def stop(self, kill=False):
        self.api.close()
        if kill:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        super().stop()


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for the collector"
        time.sleep(0.05)


@contextmanager
def serving(db, *args) -> Iterator[Serve]:
    running = Serve(db, *args)
    try:
        yield running
    finally:
        running.stop()


def _trace(rng, kind, session=None, ordinary_out=False):
    """One trace of ``kind`` (ordinary, failing, guarded, costly) with a random id."""
    while True:
        number = rng.getrandbits(128)
        if not ordinary_out or not in_rate(f"{number:032x}", RATE):
            break
    scope = {"session__id": session} if session else {}
    agent = rng.choice(AGENTS)
    spans = [
        make_span(number, 1, f"{kind}-run", duration_ms=40, agent__name=agent, **scope),
        make_span(number, 2, "llm", parent=1, start_ms=1, **LLM),
        make_span(number, 3, "search", parent=1, start_ms=20, plyra__span__kind="TOOL"),
    ]
    if kind == "failing":
        spans.append(make_span(number, 4, "flaky-tool", parent=1, start_ms=30, error=True))
    elif kind == "guarded":
        spans.append(make_span(number, 4, "policy", parent=1, start_ms=30, guard__action="block"))
    elif kind == "costly":
        big = {**LLM, "llm__token_count__prompt": 200_000}
        spans.append(make_span(number, 4, "big-llm", parent=1, start_ms=30, **big))
    return f"{number:032x}", spans


def _same(mine, theirs):
    """Equal, counting float sums equal to 1e-12 (a store may add rows in another order, with or
    without sampling); tokens, counts and keys must match exactly."""
    if isinstance(mine, float) and isinstance(theirs, float):
        return math.isclose(mine, theirs, rel_tol=1e-12)
    if isinstance(mine, dict) and isinstance(theirs, dict):
        return mine.keys() == theirs.keys() and all(_same(mine[k], theirs[k]) for k in mine)
    if isinstance(mine, list) and isinstance(theirs, list):
        return len(mine) == len(theirs) and all(map(_same, mine, theirs))
    return bool(mine == theirs)


def _send_all(collectors, traces):
    batch = []
    for _, spans in traces:
        batch += spans
        if len(batch) >= 200:
            for c in collectors:
                c.send(batch)
            batch = []
    if batch:
        for c in collectors:
            c.send(batch)


def test_mix_keeps_interesting_traces_whole_totals_exact_sessions_sticky(request, tmp_path, db):
    rng = random.Random(16)
    mix = [
        (kind, _trace(rng, kind))
        for kind in ["ordinary"] * 120 + ["failing", "guarded", "costly"] * 8
    ]
    sampling_args = (
        "--sample-rate",
        str(RATE),
        "--keep-cost-above",
        "0.05",
        "--decision-wait",
        "1",
    )
    with (
        serving(db, *sampling_args) as sampled,
        serving(another_store(request, tmp_path, db)) as plain,
    ):
        _send_all([sampled, plain], [trace for _, trace in mix])
        stats = sampled.decided(len(mix))
        assert stats["policy"]["sample_rate"] == RATE

        rows = sampled.all_traces()
        assert len(rows) == len(mix)  # every trace is listed
        kept_ordinary = 0
        for kind, (trace_id, spans) in mix:
            trace = sampled.get(f"/api/v1/traces/{trace_id}")
            assert trace["span_count"] == len(spans)
            if kind != "ordinary":
                assert trace["sampled"] is True
                assert len(trace["spans"]) == len(spans), kind
                want = {"failing": "error", "guarded": "guard:block", "costly": "cost"}[kind]
                assert trace["kept_because"] == [want]
            else:
                # Deterministic: exactly the trace ids OpenTelemetry's ratio sampler would keep.
                assert trace["sampled"] is in_rate(trace_id, RATE)
                assert len(trace["spans"]) == (len(spans) if trace["sampled"] else 0)
                assert rows[trace_id]["sampled"] is trace["sampled"]
                kept_ordinary += trace["sampled"]
        assert 0.2 * 120 < kept_ordinary < 0.4 * 120
        assert stats["dropped"] == 120 - kept_ordinary
        assert stats["bytes_saved"] > 0

        for by in ("model", "agent", "session", "service", "project", "day", "trace"):
            mine = sampled.get("/api/v1/cost", by=by, limit=500)
            assert _same(mine, plain.get("/api/v1/cost", by=by, limit=500)), by
        assert _same(sampled.get("/api/v1/agents/graph"), plain.get("/api/v1/agents/graph"))
        assert sum(r["total_tokens"] for r in rows.values()) == sum(
            r["total_tokens"] for r in plain.all_traces().values()
        )

        # Session stickiness: a session whose trace failed keeps its later ordinary traces.
        first = _trace(rng, "failing", session="conv-1")
        other = _trace(rng, "ordinary", session="conv-2", ordinary_out=True)
        _send_all([sampled], [first, other])
        sampled.decided(len(mix) + 2)
        later = _trace(rng, "ordinary", session="conv-1", ordinary_out=True)
        unrelated = _trace(rng, "ordinary", session="conv-2", ordinary_out=True)
        _send_all([sampled], [later, unrelated])
        sampled.decided(len(mix) + 4)
        kept = sampled.get(f"/api/v1/traces/{later[0]}")
        assert kept["kept_because"] == ["session"]
        assert len(kept["spans"]) == 3
        assert sampled.get(f"/api/v1/traces/{unrelated[0]}")["sampled"] is False


def test_kill_9_during_the_decision_wait_keeps_spans_and_decides_after_restart(db):
    rng = random.Random(9)
    traces = [_trace(rng, "ordinary", ordinary_out=True) for _ in range(20)]
    first = Serve(db, "--sample-rate", str(RATE), "--decision-wait", "60")
    try:
        _send_all([first], traces)
        assert first.get("/api/v1/sampling")["pending"] == 20
    finally:
        first.stop(kill=True)
    with serving(db, "--sample-rate", str(RATE), "--decision-wait", "0.2") as again:
        stats = again.decided(20)
        # All 60 spans survived the kill: the decisions taken after restart deleted them.
        assert (stats["kept"], stats["dropped"], stats["spans_dropped"]) == (0, 20, 60)
        assert again.get("/api/v1/health")["spans"] == 0
        for trace_id, _ in traces:
            trace = again.get(f"/api/v1/traces/{trace_id}")
            assert (trace["sampled"], trace["span_count"], trace["spans"]) == (False, 3, [])
