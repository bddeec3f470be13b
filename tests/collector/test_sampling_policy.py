"""The sampling decision and policy, without a collector: pure functions, checked exhaustively."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace.sampling import Decision as OTelDecision
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from plyra_trace.collector.model import STATUS_ERROR, STATUS_OK
from plyra_trace.collector.sampling import (
    PolicyError,
    TraceFacts,
    decide,
    decide_batch,
    in_rate,
    make_policy,
    span_marks,
)
from plyra_trace.collector.sampling.policy import policy_from_settings
from plyra_trace.collector.sampling.skeleton import merge, pack, unpack

trace_ids = st.integers(min_value=1, max_value=(1 << 128) - 1).map(lambda n: f"{n:032x}")
rates = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(trace_ids, rates)
def test_ordinary_decision_is_otel_trace_id_ratio(trace_id, rate):
    otel = TraceIdRatioBased(rate).should_sample(None, int(trace_id, 16), "x").decision
    assert in_rate(trace_id, rate) == (otel is OTelDecision.RECORD_AND_SAMPLE)


@given(trace_ids, rates, rates)
def test_head_and_tail_rates_compose_to_the_smaller(trace_id, head, tail):
    """A trace the SDK kept at ``head`` and the collector keeps at ``tail`` is exactly a trace
    kept at min(head, tail): the two samplers order trace ids the same way."""
    head_kept = (
        TraceIdRatioBased(head).should_sample(None, int(trace_id, 16), "x").decision.is_sampled()
    )
    assert (head_kept and in_rate(trace_id, tail)) == in_rate(trace_id, min(head, tail))


@given(trace_ids, rates)
def test_decision_is_deterministic(trace_id, rate):
    policy = make_policy(sample_rate=rate)
    facts = TraceFacts(trace_id, project="p", services=("s",))
    assert decide(facts, policy) == decide(
        TraceFacts(trace_id, project="p", services=("s",)), policy
    )


def test_about_rate_of_ordinary_traces_is_kept():
    policy = make_policy(sample_rate=0.25)
    kept = sum(
        decide(TraceFacts(f"{n * 0x9E3779B97F4A7C15 % (1 << 128):032x}"), policy).keep
        for n in range(4000)
    )
    assert 850 < kept < 1150


@pytest.mark.parametrize(
    ("facts", "reasons"),
    [
        (TraceFacts("0" * 32, marks=frozenset({"error"})), ("error",)),
        (TraceFacts("0" * 32, marks=frozenset({"guard:block", "error"})), ("error", "guard:block")),
        (TraceFacts("0" * 32, cost=2.0), ("cost",)),
        (TraceFacts("0" * 32, duration_ns=3 * 10**9), ("latency",)),
        (
            TraceFacts("0" * 32, marks=frozenset({"handoff:failed", "error"})),
            ("error", "handoff:failed"),
        ),
    ],
)
def test_interesting_traces_are_kept_at_rate_zero(facts, reasons):
    policy = make_policy(sample_rate=0.0, keep_cost_above=1.0, keep_slower_than_ms=2000)
    decision = decide(facts, policy)
    assert decision.keep
    assert decision.kept_because == reasons


def test_ordinary_trace_is_dropped_at_rate_zero_and_thresholds_are_strict():
    policy = make_policy(sample_rate=0.0, keep_cost_above=1.0, keep_slower_than_ms=2000)
    decision = decide(TraceFacts("f" * 32, cost=1.0, duration_ns=2 * 10**9), policy)
    assert not decision.keep
    assert decision.kept_because == ()


def test_span_marks():
    assert span_marks(STATUS_ERROR, None, None) == {"error"}
    assert span_marks(STATUS_ERROR, "billing", None) == {"error", "handoff:failed"}
    assert span_marks(STATUS_OK, "billing", "allow") == set()
    for action in ("block", "redact", "flag", "modify", "ESCALATE"):
        assert span_marks(STATUS_OK, None, action) == {f"guard:{action.lower()}"}


def test_session_stickiness_within_a_batch_and_from_earlier_traces():
    policy = make_policy(sample_rate=0.0)
    batch = [
        TraceFacts("1" * 32, session_id="s1"),
        TraceFacts("2" * 32, session_id="s1", marks=frozenset({"guard:block"})),
        TraceFacts("3" * 32, session_id="s2"),
        TraceFacts("4" * 32, session_id="s3"),
        TraceFacts("5" * 32),
    ]
    decisions = decide_batch(batch, policy, sticky_sessions={"s3"})
    assert [(d.keep, d.kept_because) for d in decisions] == [
        (True, ("session",)),
        (True, ("guard:block",)),
        (False, ()),
        (True, ("session",)),
        (False, ()),
    ]


def test_rates_per_project_service_and_agent_take_the_highest_match():
    policy = make_policy(
        sample_rate=0.5,
        rates={"projects": {"shop": 0.2}, "services": {"health": 0.0}, "agents": {"planner": 1.0}},
    )
    assert policy.rate_for("shop", ("api",), ()) == 0.2
    assert policy.rate_for("other", ("health",), ()) == 0.0
    assert policy.rate_for("shop", ("health",), ("planner",)) == 1.0
    assert policy.rate_for("other", ("api",), ("writer",)) == 0.5
    assert policy.active
    assert not make_policy().active


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"sample_rate": 1.5}, "--sample-rate"),
        ({"sample_rate": float("nan")}, "--sample-rate"),
        ({"keep_cost_above": -1}, "--keep-cost-above"),
        ({"keep_slower_than_ms": "slow"}, "--keep-slower-than"),
        ({"decision_wait": -2}, "--decision-wait"),
    ],
)
def test_invalid_flags_name_the_flag(settings, field):
    with pytest.raises(PolicyError, match=f"^{field}"):
        policy_from_settings(None, settings)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("sample_rate: 2\n", "sample_rate"),
        ("rates:\n  services:\n    search: -0.1\n", "rates.services.search"),
        ("rates:\n  teams: {a: 0.1}\n", "rates.teams"),
        ("sample_rat: 0.1\n", "sample_rat"),
        ("sample_rate: [0.1\n", "not valid YAML"),
        ("- 1\n- 2\n", "must hold a mapping"),
    ],
)
def test_invalid_yaml_names_the_field(tmp_path, text, field):
    path = tmp_path / "sampling.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=field.replace(".", r"\.")):
        policy_from_settings(str(path), {})


def test_yaml_file_with_flags_winning(tmp_path):
    path = tmp_path / "sampling.yaml"
    path.write_text(
        "sample_rate: 0.1\nkeep_cost_above: 0.5\ndecision_wait: 3\n"
        "rates:\n  agents:\n    planner: 1.0\n"
    )
    policy = policy_from_settings(str(path), {"sample_rate": 0.3, "keep_slower_than_ms": None})
    assert policy.sample_rate == 0.3
    assert policy.keep_cost_above == 0.5
    assert policy.decision_wait_s == 3
    assert policy.rates == {"agents": {"planner": 1.0}}
    assert policy.describe()["rates"] == {"agents": {"planner": 1.0}}


def test_skeleton_round_trip_and_merge():
    row = {
        "span_id": "a" * 16,
        "parent_id": None,
        "name": "root",
        "service": "svc",
        "project": "p",
        "own_agent": "planner",
        "start_ns": 1,
        "end_ns": 2,
        "status": 2,
        "input_tokens": 3,
        "output_tokens": 4,
        "total_tokens": 7,
        "cost": 0.25,
        "model": "m",
        "provider": "x",
        "session_id": "s",
        "user_id": "u",
        "handoff_from": None,
        "handoff_to": None,
        "handoff_protocol": None,
    }
    assert unpack(pack([row])) == [row]
    assert unpack(None) == []
    newer = {**row, "cost": 0.5}
    other = {**row, "span_id": "b" * 16}
    assert merge([row], [newer, other]) == [newer, other]
