"""Live spans in the collector: records of running spans on /v1/live, replaced by the finished span
whatever the order, never counted in totals, abandoned when their heartbeats stop."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from plyra_trace._version import VERSION
from plyra_trace.collector.storage import open_storage
from plyra_trace.collector.storage._tables import live_spans
from tests.collector.conftest import (
    Collector,
    make_request,
    make_span,
    sid,
    sse_events,
    start_collector,
    stop_collector,
    tid,
)

PROTOBUF = {"content-type": "application/x-protobuf"}


def live_span(
    trace: int, span: int, name: str, parent: int | None = None, beat: float = 5.0, **attrs: Any
) -> Any:
    """A live record as the SDK sends it: no end time, its heartbeat interval as an attribute."""
    record = make_span(
        trace, span, name, parent, base_ns=time.time_ns(), plyra__live__heartbeat_s=beat, **attrs
    )
    record.end_time_unix_nano = 0
    return record


def post_live(collector: Collector, *spans: Any) -> httpx.Response:
    body = make_request(spans).SerializeToString()
    response = collector.api.post("/v1/live", content=body, headers=PROTOBUF)
    assert response.status_code == 200, response.text
    return response


def spans_by_name(collector: Collector, trace: int) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in collector.trace(tid(trace))["spans"]}


def live_rows(collector: Collector) -> int:
    """Live records left in the store (on either store)."""
    storage = open_storage(collector.db)
    try:
        with storage.engine.connect() as conn:  # type: ignore[attr-defined]
            return int(conn.execute(select(func.count()).select_from(live_spans)).scalar_one())
    finally:
        storage.close()


def test_a_running_span_is_shown_until_the_finished_span_replaces_it(collector):
    post_live(collector, live_span(700, 1, "agent run", agent__name="planner"))
    post_live(collector, live_span(700, 2, "step", parent=1))
    listed = collector.get("/api/v1/traces")["items"][0]
    assert listed["trace_id"] == tid(700) and listed["root_name"] == "agent run"
    assert listed["running"] is True and listed["abandoned"] is False
    assert listed["span_count"] == 0 and listed["cost"] is None  # nothing finished yet
    spans = spans_by_name(collector, 700)
    assert spans["agent run"]["running"] is True and spans["agent run"]["end_ns"] is None
    assert spans["agent run"]["last_heartbeat_ns"] > 0
    assert spans["step"]["parent_id"] == sid(1) and spans["step"]["agent"] == "planner"
    assert "plyra.live.heartbeat_s" not in spans["step"]["attributes"]

    reply = collector.api.post(
        "/v1/traces",
        content=make_request(
            [make_span(700, 2, "step", parent=1, duration_ms=5)]
        ).SerializeToString(),
        headers=PROTOBUF,
    )
    assert reply.headers["x-plyra-collector"] == VERSION  # how the SDK knows it may send live
    spans = spans_by_name(collector, 700)
    assert "running" not in spans["step"] and spans["step"]["end_ns"] is not None
    assert spans["agent run"]["running"] is True
    assert collector.get("/api/v1/traces")["items"][0]["span_count"] == 1

    collector.send(make_span(700, 1, "agent run", duration_ms=50, agent__name="planner"))
    # Records arriving after the finished span (late heartbeats, duplicates) change nothing.
    post_live(collector, live_span(700, 1, "agent run"), live_span(700, 2, "step", parent=1))
    trace = collector.trace(tid(700))
    assert [(s["name"], "running" in s) for s in trace["spans"]] == [
        ("agent run", False),
        ("step", False),
    ]
    assert trace["running"] is False and trace["span_count"] == 2
    assert live_rows(collector) == 0


def test_running_spans_count_in_no_total(collector):
    post_live(
        collector,
        live_span(
            710,
            1,
            "chat gpt-4o",
            agent__name="writer",
            llm__model_name="gpt-4o",
            llm__token_count__prompt=1000,
            llm__token_count__completion=100,
        ),
    )
    trace = collector.trace(tid(710))
    assert trace["running"] is True
    assert trace["total_tokens"] == 0 and trace["cost"] is None
    assert trace["spans"][0]["cost"] is None and trace["spans"][0]["total_tokens"] is None
    assert collector.get("/api/v1/cost", by="model")["items"] == []
    assert collector.get("/api/v1/agents/graph")["nodes"] == []
    assert collector.get("/api/v1/health")["spans"] == 0
    span = collector.get(f"/api/v1/traces/{tid(710)}/spans/{sid(1)}")
    assert span["running"] is True and span["end_ns"] is None and span["output_value"] is None


def test_unknown_parents_and_duplicates_make_one_span_each(collector):
    orphan = live_span(720, 5, "orphan step", parent=99)
    post_live(collector, orphan, orphan)
    post_live(collector, live_span(720, 5, "orphan step", parent=99))
    trace = collector.trace(tid(720))
    assert [s["name"] for s in trace["spans"]] == ["orphan step"]
    assert trace["complete"] is False and trace["running"] is True
    collector.send(make_span(720, 99, "root"), make_span(720, 5, "orphan step", parent=99))
    trace = collector.trace(tid(720))
    assert [(s["name"], s["depth"]) for s in trace["spans"]] == [("root", 0), ("orphan step", 1)]
    assert trace["running"] is False and live_rows(collector) == 0


def test_a_span_whose_heartbeats_stop_is_abandoned(collector):
    post_live(collector, live_span(730, 1, "killed run", beat=0.1), live_span(731, 1, "alive"))
    assert collector.get("/api/v1/traces", running="true")["items"][0]["trace_id"] in (
        tid(730),
        tid(731),
    )

    def abandoned() -> list[str]:
        return [t["trace_id"] for t in collector.get("/api/v1/traces", abandoned="true")["items"]]

    assert collector.wait(abandoned, timeout=5) == [tid(730)]
    running = [t["trace_id"] for t in collector.get("/api/v1/traces", running="true")["items"]]
    assert running == [tid(731)]
    span = collector.trace(tid(730))["spans"][0]
    assert span["abandoned"] is True and span["running"] is False
    assert span["end_ns"] is None and span["last_heartbeat_ns"] > 0
    assert span["duration_ns"] == pytest.approx(span["last_heartbeat_ns"] - span["start_ns"])
    # The finished span still wins if it arrives after all.
    collector.send(make_span(730, 1, "killed run", base_ns=span["start_ns"]))
    assert collector.get("/api/v1/traces", abandoned="true")["items"] == []
    assert collector.api.get("/api/v1/traces", params={"abandoned": "yes"}).status_code == 400


def test_the_live_stream_announces_starts(collector):
    updates: list[dict[str, Any]] = []
    ready, done = threading.Event(), threading.Event()

    def listen() -> None:
        for kind, data in sse_events(collector.url, timeout=10):
            if kind == "ready":
                ready.set()
            elif kind == "update" and data["traces"]:
                updates.append(data)
                done.set()
                return

    threading.Thread(target=listen, daemon=True).start()
    assert ready.wait(5)
    post_live(collector, live_span(740, 1, "long agent"), live_span(740, 2, "step", parent=1))
    assert done.wait(5)
    (trace,) = updates[0]["traces"]
    assert trace["trace_id"] == tid(740) and trace["root_name"] == "long agent"
    assert trace["running"] is True and trace["running_spans"] == 2
    assert trace["span_count"] == 0


def test_live_records_need_a_key_where_traces_do_and_bad_bodies_are_refused(tmp_path):
    secured = start_collector(tmp_path, require_keys=True)
    try:
        body = make_request([live_span(750, 1, "x")]).SerializeToString()
        assert secured.api.post("/v1/live", content=body, headers=PROTOBUF).status_code == 401
    finally:
        stop_collector(secured)


def test_malformed_live_records_get_a_reason(collector):
    wrong_type = collector.api.post(
        "/v1/live", content=b"{}", headers={"content-type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    garbage = collector.api.post("/v1/live", content=b"\xff\x00garbage", headers=PROTOBUF)
    assert garbage.status_code == 400 and garbage.json()["message"]


def test_openapi_describes_live_ingest_and_filters(collector):
    spec = collector.get("/api/v1/openapi.json")
    assert list(spec["paths"]["/v1/live"]) == ["post"]
    params = {p["name"] for p in spec["paths"]["/api/v1/traces"]["get"]["parameters"]}
    assert {"running", "abandoned"} <= params


def test_a_running_trace_is_not_decided_by_tail_sampling(tmp_path, db):
    from plyra_trace.collector.sampling import make_policy

    policy = make_policy(sample_rate=0.0, decision_wait=0.2)
    sampling = start_collector(tmp_path, db=db, sampling=policy)
    try:
        post_live(sampling, live_span(760, 1, "long run"))
        sampling.send(make_span(760, 2, "step", parent=1, base_ns=time.time_ns()))
        sampling.send(make_span(761, 1, "ordinary", base_ns=time.time_ns()))
        # The ordinary trace is decided (dropped) after the wait; the running one waits for it.
        sampling.wait(lambda: sampling.get("/api/v1/sampling")["dropped"] >= 1)
        stats = sampling.get("/api/v1/sampling")
        assert (stats["dropped"], stats["pending"]) == (1, 1)
        assert sampling.trace(tid(760))["running"] is True

        sampling.send(make_span(760, 1, "long run", base_ns=time.time_ns()))
        sampling.wait(lambda: sampling.get("/api/v1/sampling")["pending"] == 0)
        assert sampling.trace(tid(760))["sampled"] is False  # decided once it finished
        assert sampling.trace(tid(760))["span_count"] == 2
    finally:
        stop_collector(sampling)
