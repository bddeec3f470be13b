"""Stateless replicas on one PostgreSQL database: every replica sees every span, announces other
replicas' spans on its live stream, is guarded by the same keys, and keeps summaries exact when
spans of one trace reach different replicas at the same moment."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from plyra_trace.__main__ import main
from tests.collector.conftest import make_request, make_span, sid, sse_events, tid
from tests.collector.serve_process import Served

PROTOBUF = {"content-type": "application/x-protobuf"}


def _post(url, spans, **headers):
    body = make_request(spans).SerializeToString()
    return httpx.post(f"{url}/v1/traces", content=body, headers={**PROTOBUF, **headers})


@pytest.fixture(scope="module")
def replicas(postgres):
    db = postgres.database()
    pair = [Served(db), Served(db)]
    yield db, pair
    for replica in pair:
        replica.stop()


def test_every_replica_sees_all_and_one_trace_split_across_replicas_stays_exact(replicas):
    _, (a, b) = replicas
    llm = {"llm__model_name": "gpt-4o", "llm__token_count__prompt": 100}
    # 30 traces, each split in two halves posted to the two replicas at the same moment.
    halves = []
    for trace in range(500, 530):
        first = [make_span(trace, 1, "root", agent__name="planner")]
        first += [make_span(trace, s, f"a{s}", parent=1, **llm) for s in range(2, 11)]
        second = [make_span(trace, s, f"b{s}", parent=1, **llm) for s in range(11, 21)]
        second.append(make_span(trace, 21, "handoff", parent=1, agent__handoff__to="writer"))
        halves += [(a.url, first), (b.url, second)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda item: _post(*item).status_code, halves))
    assert statuses == [200] * len(halves)
    for replica in (a, b):
        listed = httpx.get(f"{replica.url}/api/v1/traces", params={"limit": 100}).json()["items"]
        listed = [t for t in listed if t["root_name"] == "root"]
        assert {t["trace_id"] for t in listed} == {tid(t) for t in range(500, 530)}
        assert {t["span_count"] for t in listed} == {21}
        assert {t["total_tokens"] for t in listed} == {1900}
        assert {t["agents"] == ["planner"] for t in listed} == {True}
        graph = httpx.get(f"{replica.url}/api/v1/agents/graph").json()
        assert [(e["from"], e["to"], e["count"]) for e in graph["edges"]] == [
            ("planner", "writer", 30)
        ]
        # The hourly roll-ups both replicas added to at once add up exactly.
        cost = httpx.get(f"{replica.url}/api/v1/cost", params={"by": "model"}).json()["items"]
        assert [(c["key"], c["calls"], c["total_tokens"]) for c in cost] == [
            ("gpt-4o", 30 * 19, 30 * 1900)
        ]
        trace = httpx.get(f"{replica.url}/api/v1/traces/{tid(529)}").json()
        assert {s["agent"] for s in trace["spans"] if s["span_id"] != sid(21)} == {"planner"}


def test_live_stream_of_one_replica_announces_what_another_ingested(replicas):
    _, (a, b) = replicas
    ready, seen = threading.Event(), threading.Event()
    traces: list[dict] = []

    def listen():
        for kind, data in sse_events(b.url):
            if kind == "ready":
                ready.set()
            elif kind == "update" and data["traces"]:
                traces.extend(data["traces"])
                seen.set()
                return

    threading.Thread(target=listen, daemon=True).start()
    assert ready.wait(10)
    assert _post(a.url, [make_span(600, 1, "elsewhere")]).status_code == 200
    assert seen.wait(10)
    assert traces[0]["trace_id"] == tid(600)
    assert traces[0]["span_count"] == 1


def test_keys_in_the_database_guard_every_replica(postgres, capsys):
    db = postgres.database()
    assert main(["keys", "create", "--db", db, "--name", "ci"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    key_id, token = lines[0].split()[2], lines[-1]
    pair = [Served(db, "--host", "0.0.0.0"), Served(db, "--host", "0.0.0.0")]
    try:
        for replica in pair:
            assert _post(replica.url, [make_span(700, 1, "x")]).status_code == 401
            auth = {"authorization": f"Bearer {token}"}
            assert _post(replica.url, [make_span(700, 1, "x")], **auth).status_code == 200
            assert httpx.get(f"{replica.url}/api/v1/traces", headers=auth).status_code == 200
        assert main(["keys", "revoke", key_id, "--db", db]) == 0
        for replica in pair:
            response = httpx.get(f"{replica.url}/api/v1/traces", headers=auth)
            assert response.status_code == 401
    finally:
        for replica in pair:
            replica.stop()


def test_workers_share_one_port_on_postgres(postgres):
    served = Served(postgres.database(), "--workers", "2")
    try:
        for trace in range(800, 810):
            assert _post(served.url, [make_span(trace, 1, "w")]).status_code == 200
        listed = httpx.get(f"{served.url}/api/v1/traces", params={"limit": 50}).json()["items"]
        assert len(listed) == 10
    finally:
        served.stop()
