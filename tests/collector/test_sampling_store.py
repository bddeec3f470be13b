"""Tail sampling inside a collector on both stores: decisions, late spans, stickiness, totals."""

from __future__ import annotations

import pytest

from plyra_trace.collector.sampling import make_policy
from tests.collector.conftest import another_store, make_span, start_collector, stop_collector, tid

LLM = {
    "llm__model_name": "gpt-4o",
    "llm__token_count__prompt": 1000,
    "llm__token_count__completion": 200,
}


@pytest.fixture
def sampling(tmp_path, db):
    policy = make_policy(sample_rate=0.0, keep_cost_above=0.05, decision_wait=0.2)
    running = start_collector(tmp_path, db=db, sampling=policy)
    yield running
    stop_collector(running)


def _decided(collector, count):
    return collector.wait(
        lambda: (
            (s := collector.get("/api/v1/sampling"))["kept"] + s["dropped"] >= count
            and s["pending"] == 0
            and s
        )
    )


def test_interesting_traces_keep_spans_ordinary_ones_keep_summary(sampling):
    sampling.send(make_span(1, 1, "ordinary"), make_span(1, 2, "llm", parent=1, **LLM))
    sampling.send(make_span(2, 1, "failing"), make_span(2, 2, "tool", parent=1, error=True))
    sampling.send(
        make_span(3, 1, "guarded"),
        make_span(3, 2, "policy", parent=1, guard__action="block", plyra__span__kind="GUARD"),
    )
    sampling.send(
        make_span(4, 1, "costly"),
        make_span(4, 2, "llm", parent=1, **{**LLM, "llm__token_count__prompt": 100_000}),
    )
    stats = _decided(sampling, 4)
    assert (stats["kept"], stats["dropped"], stats["spans_dropped"]) == (3, 1, 2)
    assert stats["bytes_saved"] > 0
    assert stats["policy"]["sample_rate"] == 0.0

    ordinary = sampling.trace(tid(1))
    assert ordinary["sampled"] is False
    assert ordinary["spans"] == []
    assert ordinary["span_count"] == 2
    assert ordinary["total_tokens"] == 1200
    assert ordinary["cost"] > 0
    assert ordinary["kept_because"] is None
    reasons = {n: sampling.trace(tid(n))["kept_because"] for n in (2, 3, 4)}
    assert reasons == {2: ["error"], 3: ["guard:block"], 4: ["cost"]}
    for n in (2, 3, 4):
        trace = sampling.trace(tid(n))
        assert trace["sampled"] is True
        assert len(trace["spans"]) == 2
    rows = {row["trace_id"]: row for row in sampling.get("/api/v1/traces")["items"]}
    assert rows[tid(1)]["sampled"] is False
    assert rows[tid(2)]["kept_because"] == ["error"]


def test_late_spans_follow_the_decision_and_totals_stay_exact(sampling, request, tmp_path, db):
    plain = start_collector(tmp_path, db=another_store(request, tmp_path, db))
    try:
        first = [
            make_span(7, 1, "ordinary", agent__name="planner"),
            make_span(7, 2, "llm", parent=1, **LLM),
        ]
        kept_first = [make_span(8, 1, "failing"), make_span(8, 2, "x", parent=1, error=True)]
        late = [make_span(7, 3, "late-llm", parent=2, start_ms=5, **LLM)]
        kept_late = [make_span(8, 3, "late", parent=1, **LLM)]
        for spans in (first, kept_first):
            sampling.send(*spans)
            plain.send(*spans)
        _decided(sampling, 2)
        for spans in (late, kept_late):
            sampling.send(*spans)
            plain.send(*spans)
        dropped = sampling.trace(tid(7))
        assert dropped["sampled"] is False
        assert dropped["spans"] == []
        assert dropped["span_count"] == 3
        assert dropped["agents"] == ["planner"]  # the late span's agent comes from the skeleton
        assert len(sampling.trace(tid(8))["spans"]) == 3  # a kept trace grows
        for trace in (7, 8):
            mine, theirs = sampling.trace(tid(trace)), plain.trace(tid(trace))
            for key in ("span_count", "total_tokens", "input_tokens", "cost", "error_count"):
                assert mine[key] == theirs[key], key
        for by in ("model", "agent", "trace", "day"):
            assert sampling.get("/api/v1/cost", by=by) == plain.get("/api/v1/cost", by=by), by
        assert sampling.get("/api/v1/agents/graph") == plain.get("/api/v1/agents/graph")
        assert sampling.get("/api/v1/sampling")["pending"] == 0  # decided traces stay decided
    finally:
        stop_collector(plain)


def test_a_session_with_a_problem_keeps_its_later_traces(sampling):
    sampling.send(
        make_span(20, 1, "turn-1", session__id="s-1"), make_span(20, 2, "x", parent=1, error=True)
    )
    sampling.send(make_span(21, 1, "other-session", session__id="s-2"))
    _decided(sampling, 2)
    sampling.send(make_span(22, 1, "turn-2", session__id="s-1"))
    sampling.send(make_span(23, 1, "turn-1", session__id="s-2"))
    _decided(sampling, 4)
    assert sampling.trace(tid(22))["kept_because"] == ["session"]
    assert sampling.trace(tid(23))["sampled"] is False
