"""The Guards API: decisions per policy and action, a time series, trace filters, a session's
decisions across services; fed over OTLP (protobuf by hand, and a real plyra-guard through the SDK).
"""

from __future__ import annotations

import plyra_trace
from tests.collector.conftest import make_span, sid, tid

MS = 1_000_000
BASE = 1_700_000_000_000_000_000


def _guard(trace, span, parent, policy, action, *, start_ms, duration_ms=2, provider="plyra-guard"):
    return make_span(
        trace,
        span,
        f"guard {policy}",
        parent=parent,
        start_ms=start_ms,
        duration_ms=duration_ms,
        base_ns=BASE,
        plyra__span__kind="GUARD",
        guard__policy=policy,
        guard__action=action,
        guard__triggered=action != "allow",
        guard__provider=provider,
    )


def _seed(collector):
    # Session s-1 spans two services: the gateway's trace 1 and the worker's trace 2.
    collector.send(
        make_span(
            1, 1, "chat", base_ns=BASE, duration_ms=100, agent__name="planner", session__id="s-1"
        ),
        _guard(1, 2, 1, "no-pii", "allow", start_ms=1, duration_ms=1),
        _guard(1, 3, 1, "no-pii", "block", start_ms=5, duration_ms=3),
        service="gateway",
    )
    collector.send(
        make_span(
            2,
            1,
            "draft",
            base_ns=BASE,
            start_ms=60_000,
            duration_ms=50,
            agent__name="writer",
            session__id="s-1",
        ),
        _guard(2, 2, 1, "no-pii", "block", start_ms=60_010, duration_ms=9),
        _guard(2, 3, 1, "toxicity", "flag", start_ms=60_020, provider="guardrails-ai"),
        service="worker",
    )
    # A span with guard attributes but no decision (no guard.action) is not a decision.
    collector.send(
        make_span(3, 1, "other", base_ns=BASE, start_ms=120_000, agent__name="writer"),
        make_span(
            3,
            2,
            "check",
            parent=1,
            base_ns=BASE,
            start_ms=120_001,
            plyra__span__kind="GUARD",
            guard__name="undecided",
        ),
    )


def test_decisions_per_policy_and_action_with_agents_latency_and_recent_traces(collector):
    _seed(collector)
    data = collector.get("/api/v1/guards")
    rows = {(r["policy"], r["action"]): r for r in data["items"]}
    assert set(rows) == {("no-pii", "allow"), ("no-pii", "block"), ("toxicity", "flag")}
    blocks = rows[("no-pii", "block")]
    assert blocks["count"] == 2
    assert sorted(blocks["agents"]) == ["planner", "writer"]  # each decision's effective agent
    assert blocks["providers"] == ["plyra-guard"]
    assert blocks["p95_ns"] == 9 * MS
    assert blocks["trace_id"] == tid(2)  # the most recent first
    assert blocks["trace_ids"] == [tid(2), tid(1)]
    assert rows[("toxicity", "flag")]["providers"] == ["guardrails-ai"]
    assert data["items"][0]["policy"] == "no-pii" and data["items"][0]["action"] == "block"
    assert data["blocked_agents"] == [
        {"agent": "planner", "count": 1},
        {"agent": "writer", "count": 1},
    ]
    # The series: counts per bucket per policy and action, adding up to the totals.
    assert data["bucket_ns"] > 0
    assert data["since_ns"] <= BASE + MS and data["until_ns"] > BASE + 60_020 * MS
    totals: dict[tuple[str, str], int] = {}
    for point in data["series"]:
        assert point["t_ns"] % data["bucket_ns"] == 0
        key = (point["policy"], point["action"])
        totals[key] = totals.get(key, 0) + point["count"]
    assert totals == {key: row["count"] for key, row in rows.items()}


def test_filters_by_agent_provider_project_and_window(collector):
    _seed(collector)
    by_agent = collector.get("/api/v1/guards", agent="planner")["items"]
    assert {(r["policy"], r["action"]) for r in by_agent} == {
        ("no-pii", "allow"),
        ("no-pii", "block"),
    }
    by_provider = collector.get("/api/v1/guards", provider="guardrails-ai")["items"]
    assert [(r["policy"], r["count"]) for r in by_provider] == [("toxicity", 1)]
    assert collector.get("/api/v1/guards", project="elsewhere")["items"] == []
    late = collector.get("/api/v1/guards", since=BASE + 30_000 * MS)["items"]
    assert {(r["policy"], r["action"]) for r in late} == {("no-pii", "block"), ("toxicity", "flag")}
    assert collector.get("/api/v1/guards", since=BASE * 2) == {
        "items": [],
        "series": [],
        "bucket_ns": None,
        "since_ns": None,
        "until_ns": None,
        "blocked_agents": [],
    }
    response = collector.api.get("/api/v1/guards", params={"last": "soon"})
    assert response.status_code == 400 and "last" in response.text


def test_trace_list_filters_by_guard_policy_and_action(collector):
    _seed(collector)
    ids = lambda **p: [t["trace_id"] for t in collector.get("/api/v1/traces", **p)["items"]]  # noqa: E731
    assert ids(guard_policy="no-pii") == [tid(2), tid(1)]
    assert ids(guard_policy="no-pii", guard_action="allow") == [tid(1)]
    assert ids(guard_action="flag") == [tid(2)]
    assert ids(guard_policy="undecided") == []


def test_a_sessions_decisions_across_services_in_time_order(collector):
    _seed(collector)
    data = collector.get("/api/v1/sessions/s-1/guards")
    assert [
        (g["trace_id"], g["span_id"], g["service"], g["agent"], g["action"]) for g in data["items"]
    ] == [
        (tid(1), sid(2), "gateway", "planner", "allow"),
        (tid(1), sid(3), "gateway", "planner", "block"),
        (tid(2), sid(2), "worker", "writer", "block"),
        (tid(2), sid(3), "worker", "writer", "flag"),
    ]
    assert collector.get("/api/v1/sessions/nobody/guards")["items"] == []


def test_plyra_guard_decisions_exported_by_the_sdk_reach_the_guards_view(collector, tmp_path):
    from plyra_guard import ActionGuard
    from plyra_guard.exceptions import ExecutionBlockedError

    from plyra_trace.integrations.plyra_guard import instrument
    from tests.integrations.test_plyra_guard import POLICY

    config = tmp_path / "guard.yaml"
    config.write_text(POLICY)
    guard = ActionGuard.from_config(str(config))
    handle = plyra_trace.init("guards-e2e", endpoint=collector.url, console=False)
    try:
        instrument(guard)

        @guard.protect("file.read")
        def read_file(path: str) -> str:
            return path

        @plyra_trace.agent(name="researcher")
        def research() -> None:
            with plyra_trace.session("s-e2e"):
                read_file("/tmp/a")
                try:
                    read_file("/etc/shadow")
                except ExecutionBlockedError:
                    pass

        research()
    finally:
        handle.shutdown()
    data = collector.wait(
        lambda: (d := collector.get("/api/v1/guards", provider="plyra-guard"))["items"] and d
    )
    rows = {(r["policy"], r["action"]): r for r in data["items"]}
    assert rows[("no-system-files", "block")]["agents"] == ["researcher"]
    assert rows[("default", "allow")]["count"] == 1
    assert data["blocked_agents"] == [{"agent": "researcher", "count": 1}]
    session = collector.get("/api/v1/sessions/s-e2e/guards")["items"]
    assert [g["action"] for g in session] == ["allow", "block"]
