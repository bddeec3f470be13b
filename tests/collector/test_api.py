"""The JSON API: filters and pagination, edges, flamegraphs, sessions, escaping, live stream."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from plyra_trace.__main__ import main
from tests.collector.conftest import make_request, make_span, tid

MS = 1_000_000


def _seed_traces(collector):
    """Five traces, one per 10 s, with varied service, agent, status, session, user, duration."""
    base = 1_700_000_000_000_000_000
    specs = [
        # trace, name, service, agent, error, session, user, duration_ms, cost
        (60, "checkout", "shop", "cashier", False, "s-a", "ann", 10, 0.01),
        (61, "search products", "shop", "finder", False, "s-a", "ann", 200, 0.2),
        (62, "checkout", "pay", "cashier", True, "s-b", "bob", 50, None),
        (63, "refund", "pay", "clerk", False, "s-b", "bob", 500, 2.0),
        (64, "search orders", "shop", "finder", True, None, None, 5, 0.05),
    ]
    for index, (trace, name, service, agent, error, session, user, duration, cost) in enumerate(
        specs
    ):
        attrs = {"agent__name": agent}
        if session:
            attrs["session__id"] = session
        if user:
            attrs["user__id"] = user
        spans = [
            make_span(trace, 1, name, duration_ms=duration, base_ns=base + index * 10**10, **attrs),
            make_span(
                trace,
                2,
                f"{name}.inner",
                parent=1,
                error=error,
                base_ns=base + index * 10**10,
                **({"llm__cost__total": cost} if cost is not None else {}),
            ),
        ]
        collector.send(*spans, service=service)
    return base


def _ids(page):
    return [item["trace_id"] for item in page["items"]]


def test_trace_list_filters(collector):
    base = _seed_traces(collector)
    q = lambda **params: _ids(collector.get("/api/v1/traces", **params))  # noqa: E731
    assert q() == [tid(t) for t in (64, 63, 62, 61, 60)]  # newest first
    assert q(service="pay") == [tid(63), tid(62)]
    assert q(agent="finder") == [tid(64), tid(61)]
    assert q(status="error") == [tid(64), tid(62)]
    assert q(status="ok") == [tid(63), tid(61), tid(60)]
    assert q(session="s-a") == [tid(61), tid(60)]
    assert q(user="bob") == [tid(63), tid(62)]
    assert q(min_duration_ms=100) == [tid(63), tid(61)]
    assert q(min_cost=0.1) == [tid(63), tid(61)]
    assert q(q="search") == [tid(64), tid(61)]
    assert q(q="inner", service="shop", status="error") == [tid(64)]
    assert q(q="100%") == []  # LIKE wildcards are literal
    assert q(since=base + 10**10, until=base + 3 * 10**10) == [tid(62), tid(61)]
    assert q(since="2023-11-14T22:13:50Z") == [tid(64), tid(63)]
    assert q(project="shop") == [tid(64), tid(61), tid(60)]


def test_facets_list_filter_choices(collector):
    _seed_traces(collector)
    collector.send(make_span(65, 1, "llm", llm__model_name="gpt-4o", llm__token_count__prompt=3))
    facets = collector.get("/api/v1/facets")
    assert facets["services"] == ["pay", "shop", "svc"]
    assert facets["projects"] == ["pay", "shop", "svc"]
    assert facets["agents"] == ["cashier", "clerk", "finder"]
    assert facets["models"] == ["gpt-4o"]
    assert collector.get("/api/v1/facets", since=2_000_000_000_000_000_000)["agents"] == []


def test_trace_list_cursor_pagination(collector):
    _seed_traces(collector)
    seen = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = collector.get("/api/v1/traces", **params)
        seen += _ids(page)
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [tid(t) for t in (64, 63, 62, 61, 60)]


def test_sessions_and_one_session(collector):
    _seed_traces(collector)
    sessions = collector.get("/api/v1/sessions")["items"]
    assert [s["session_id"] for s in sessions] == ["s-b", "s-a"]
    s_b = sessions[0]
    assert (s_b["traces"], s_b["spans"], s_b["errors"], s_b["user_id"]) == (2, 4, 1, "bob")
    assert s_b["cost"] == pytest.approx(2.0)
    first = collector.get("/api/v1/sessions", limit=1)
    assert len(first["items"]) == 1
    second = collector.get("/api/v1/sessions", limit=1, cursor=first["next_cursor"])
    assert second["items"][0]["session_id"] == "s-a"
    assert second["next_cursor"] is None
    one = collector.get("/api/v1/sessions/s-a")
    assert _ids(one) == [tid(61), tid(60)]


def test_handoffs_become_edges_with_counts_errors_latency_and_cost(collector):
    for trace in range(70, 80):
        error = trace >= 78
        collector.send(
            make_span(trace, 1, "plan", agent__name="planner", duration_ms=1000),
            make_span(
                trace,
                2,
                "POST /research",
                parent=1,
                duration_ms=trace - 69,  # 1..10 ms
                error=error,
                agent__handoff__from="planner",
                agent__handoff__to="researcher",
                agent__handoff__protocol="http",
            ),
            make_span(trace, 3, "research", parent=2, agent__name="researcher"),
            make_span(trace, 4, "llm", parent=3, llm__cost__total=0.5),
            service="svc",
        )
    collector.send(
        make_span(80, 1, "plan", agent__name="planner"),
        make_span(80, 2, "delegate", parent=1, agent__handoff__to="writer"),
    )
    graph = collector.get("/api/v1/agents/graph")
    edges = {(e["from"], e["to"], e["protocol"]): e for e in graph["edges"]}
    http = edges[("planner", "researcher", "http")]
    assert http["count"] == 10
    assert http["errors"] == 2
    assert http["avg_ns"] == pytest.approx(5.5 * MS, rel=0.01)
    assert http["p95_ns"] == pytest.approx(10 * MS, rel=0.025)  # read from 5% latency buckets
    assert http["cost"] == pytest.approx(5.0)  # the cost under the receiving side
    # No explicit "from": the sender is the agent the handoff span runs under.
    assert edges[("planner", "writer", "in-process")]["count"] == 1
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes) == {"planner", "researcher", "writer"}
    assert nodes["researcher"]["cost"] == pytest.approx(5.0)
    assert nodes["planner"]["errors"] == 2  # the failing handoff spans run under the planner
    windowed = collector.get("/api/v1/agents/graph", since=2_000_000_000_000_000_000)
    assert windowed["edges"] == []


def test_trace_flamegraph_by_time_cost_and_tokens(collector):
    collector.send(
        make_span(90, 1, "root", duration_ms=100),
        make_span(90, 2, "a", parent=1, duration_ms=60, llm__cost__total=1.0),
        make_span(90, 3, "b", parent=1, start_ms=60, duration_ms=30, llm__token_count__total=70),
        make_span(90, 4, "a1", parent=2, duration_ms=20, llm__cost__total=0.5),
    )
    by_time = collector.get(f"/api/v1/traces/{tid(90)}/flamegraph")["root"]
    root = by_time["children"][0]
    assert (root["name"], root["value"], root["self"]) == ("root", 100 * MS, 10 * MS)
    assert [c["name"] for c in root["children"]] == ["a", "b"]
    assert root["children"][0]["children"][0]["value"] == 20 * MS
    by_cost = collector.get(f"/api/v1/traces/{tid(90)}/flamegraph", weight="cost")["root"]
    assert by_cost["value"] == pytest.approx(1.5)
    assert by_cost["children"][0]["children"][0]["value"] == pytest.approx(1.5)
    by_tokens = collector.get(f"/api/v1/traces/{tid(90)}/flamegraph", weight="tokens")["root"]
    assert by_tokens["value"] == 70


def test_flamegraph_aggregated_across_traces_by_root_name_and_agent(collector):
    for trace in (91, 92, 93):
        collector.send(
            make_span(trace, 1, "answer", duration_ms=100),
            make_span(trace, 2, "retrieve", parent=1, duration_ms=trace - 90, agent__name="rag"),
            make_span(trace, 3, "embed", parent=2, duration_ms=1, llm__token_count__total=10),
        )
    collector.send(make_span(94, 1, "other-root", duration_ms=5))
    flame = collector.get("/api/v1/flamegraph", root_name="answer")
    assert flame["traces"] == 3
    answer = flame["root"]["children"][0]
    assert (answer["name"], answer["count"], answer["value"]) == ("answer", 3, 300 * MS)
    retrieve = answer["children"][0]
    assert (retrieve["count"], retrieve["value"]) == (3, 6 * MS)
    tokens = collector.get("/api/v1/flamegraph", agent="rag", weight="tokens")
    assert tokens["traces"] == 3
    top = tokens["root"]["children"]
    assert [(n["name"], n["value"]) for n in top] == [("retrieve", 30)]  # rooted at the agent


def test_json_escapes_markup(collector):
    collector.send(make_span(95, 1, "<script>alert('x')</script> & co", note="</a>"))
    response = collector.api.get(f"/api/v1/traces/{tid(95)}")
    assert "<" not in response.text and ">" not in response.text and "&" not in response.text
    trace = response.json()
    assert trace["root_name"] == "<script>alert('x')</script> & co"
    assert trace["spans"][0]["attributes"]["note"] == "</a>"
    assert "access-control-allow-origin" not in response.headers  # no CORS by default


def test_live_stream_announces_traces_and_edges(collector):
    updates: list[dict] = []
    ready = threading.Event()
    done = threading.Event()

    def listen():
        with httpx.stream("GET", f"{collector.url}/api/v1/stream", timeout=10) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    if kind == "ready":
                        ready.set()
                    else:
                        assert kind == "update"
                        updates.append(json.loads(line[6:]))
                        done.set()
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(5)
    collector.send(
        make_span(96, 1, "live", agent__name="a"),
        make_span(96, 2, "hop", parent=1, agent__handoff__to="b"),
    )
    assert done.wait(5)
    [update] = updates
    assert update["spans"] == 2 and update["truncated"] is False
    [trace] = update["traces"]
    assert trace["trace_id"] == tid(96) and trace["span_count"] == 2
    assert update["edges"] == [
        {"from": "a", "to": "b", "protocol": "in-process", "count": 1, "errors": 0, "cost": None}
    ]
    assert "spans" not in trace  # summaries, never span lists


def test_concurrent_senders_are_all_acknowledged_and_stored(collector):
    def send(trace):
        spans = [make_span(trace, s, f"s{s}", parent=1 if s > 1 else None) for s in range(1, 51)]
        response = httpx.post(
            f"{collector.url}/v1/traces",
            content=make_request(spans).SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(1000, 1040)))
    assert statuses == [200] * 40
    assert collector.get("/api/v1/health")["spans"] == 2000
    assert collector.trace(tid(1039))["span_count"] == 50


def test_openapi_and_root_placeholder(collector):
    spec = collector.get("/api/v1/openapi.json")
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/traces" in spec["paths"]
    assert "post" in spec["paths"]["/v1/traces"]
    params = {p["name"] for p in spec["paths"]["/api/v1/traces"]["get"]["parameters"]}
    assert {"service", "agent", "cursor", "min_cost"} <= params
    root = collector.api.get("/")
    assert root.status_code == 200
    assert root.headers["content-type"].startswith("text/html")


def test_serve_refuses_a_public_bind_without_keys_or_open(capsys, tmp_path):
    db = str(tmp_path / "public.db")
    assert main(["serve", "--host", "0.0.0.0", "--port", "1", "--db", db]) == 2
    assert "--open" in capsys.readouterr().err
