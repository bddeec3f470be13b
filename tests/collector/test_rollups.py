"""Roll-up answers equal answers computed straight from the stored span rows, on both stores.

Random traces arrive in random order and random batches (late spans re-derive their traces),
some are re-sent, and retention deletes some; after each example every cost dimension and the
agents graph, over windows aligned to hours and not, must equal a direct computation from the
``spans`` table (the graph's p95 within its 5% latency buckets)."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from plyra_trace.collector.model import STATUS_ERROR, Row, SpanRecord
from plyra_trace.collector.storage import Storage, open_storage
from plyra_trace.collector.storage import _tables as t
from plyra_trace.collector.summary import derive

HOUR = 3_600 * 10**9
BASE = 1_700_000_000 * 10**9 // HOUR * HOUR  # an hour boundary
_ids = itertools.count(1)


@pytest.fixture(scope="module", params=("sqlite", "postgres"))
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    if request.param == "sqlite":
        url = str(tmp_path_factory.mktemp("rollups") / "c.db")
    else:
        url = request.getfixturevalue("postgres").database()
    opened = open_storage(url)
    yield opened
    opened.close()


_span = st.fixed_dictionaries(
    {
        "parent": st.integers(-1, 5),
        "agent": st.sampled_from([None, None, "a", "b"]),
        "model": st.sampled_from([None, "m1", "m2"]),
        "tokens": st.one_of(st.none(), st.tuples(st.integers(0, 50), st.integers(0, 50))),
        "cost": st.sampled_from([None, None, 0.5, 0.25, 0.001]),
        "error": st.booleans(),
        "handoff": st.sampled_from([None, None, ("b", "http"), ("c", None)]),
        "hour": st.integers(0, 4),
        "offset": st.integers(0, HOUR - 1),
        "duration": st.integers(0, 10**10),
        "service": st.sampled_from(["s1", "s2"]),
    }
)
_trace = st.fixed_dictionaries(
    {
        "spans": st.lists(_span, min_size=1, max_size=6),
        "session": st.sampled_from([None, "x", "y"]),
        "user": st.sampled_from([None, "u", "v"]),
    }
)


def _records(trace: Row) -> list[SpanRecord]:
    number = next(_ids)
    trace_id = f"{number:032x}"
    out = []
    for i, s in enumerate(trace["spans"]):
        parent = None if i == 0 or s["parent"] < 0 else f"{min(s['parent'], i - 1) + 1:016x}"
        start = BASE + s["hour"] * HOUR + s["offset"]
        tokens = s["tokens"]
        out.append(
            SpanRecord(
                trace_id=trace_id,
                span_id=f"{i + 1:016x}",
                parent_id=parent,
                name=f"op{i}",
                otel_kind="INTERNAL",
                kind="LLM" if s["model"] else "CHAIN",
                service=s["service"],
                project="p1" if number % 2 else "p2",
                start_ns=start,
                end_ns=start + s["duration"],
                status=STATUS_ERROR if s["error"] else 1,
                agent=s["agent"],
                session_id=trace["session"] if i == 0 else None,
                user_id=trace["user"] if i == 0 else None,
                model=s["model"],
                input_tokens=None if tokens is None else tokens[0],
                output_tokens=None if tokens is None else tokens[1],
                total_tokens=None if tokens is None else sum(tokens),
                cost=s["cost"],
                handoff_to=s["handoff"][0] if s["handoff"] else None,
                handoff_protocol=s["handoff"][1] if s["handoff"] else None,
            )
        )
    return out


def _stored(store: Any) -> list[Any]:
    """Derive every stored trace again from its span rows alone."""
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(t.spans)).mappings()]
    by_trace: dict[str, list[Row]] = {}
    for row in rows:
        by_trace.setdefault(row["trace_id"], []).append(row)
    return [derive(trace_id, spans) for trace_id, spans in by_trace.items()]


def _inside(start: int, since: int | None, until: int | None) -> bool:
    return (since is None or start >= since) and (until is None or start < until)


def _money(costs: list[float]) -> float | None:
    return sum(costs) if costs else None


def _expected_cost(derived: list[Any], by: str, since: int | None, until: int | None) -> dict:
    groups: dict[Any, dict[str, Any]] = {}
    if by in ("session", "user"):
        for d in derived:
            s = d.summary
            key = s[f"{by}_id"]
            if key is None or not _inside(s["start_ns"], since, until):
                continue
            g = groups.setdefault(key, {"traces": 0, "spans": 0, "costs": [], "tokens": 0})
            g["traces"] += 1
            g["spans"] += s["span_count"]
            g["tokens"] += s["total_tokens"]
            if s["cost"] is not None:
                g["costs"].append(s["cost"])
        return {
            k: (g["traces"], g["spans"], g["tokens"], _money(g["costs"])) for k, g in groups.items()
        }
    for d in derived:
        for u in d.usage:
            if not _inside(u["start_ns"], since, until):
                continue
            key = (
                f"{datetime.fromtimestamp(u['day'] * 86_400, UTC):%Y-%m-%d}"
                if by == "day"
                else u[by]
            )
            g = groups.setdefault(key, {"calls": 0, "tokens": 0, "costs": [], "unpriced": 0})
            g["calls"] += u["llm_calls"]
            g["tokens"] += u["total_tokens"]
            g["unpriced"] += u["unpriced"]
            if u["cost"] is not None:
                g["costs"].append(u["cost"])
    return {
        k: (g["calls"], g["tokens"], g["unpriced"], _money(g["costs"]))
        for k, g in groups.items()
        if g["calls"] > 0
    }


def _answered_cost(store: Storage, by: str, since: int | None, until: int | None) -> dict:
    rows = store.cost_breakdown(by, since, until, 10_000)  # type: ignore[arg-type]
    if by in ("session", "user"):
        return {r["key"]: (r["traces"], r["spans"], r["total_tokens"], r["cost"]) for r in rows}
    return {r["key"]: (r["calls"], r["total_tokens"], r["unpriced"], r["cost"]) for r in rows}


def _nearest_rank_p95(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def _expected_graph(derived: list[Any], since: int | None, until: int | None) -> tuple[dict, dict]:
    nodes: dict[str, dict[str, Any]] = {}
    for d in derived:
        first: dict[str, int] = {}
        for u in d.usage:
            if u["agent"] is None:
                continue
            first[u["agent"]] = min(first.get(u["agent"], u["start_ns"]), u["start_ns"])
            if _inside(u["start_ns"], since, until):
                n = nodes.setdefault(
                    u["agent"], {"spans": 0, "traces": 0, "errors": 0, "costs": [], "tokens": 0}
                )
                n["spans"] += u["spans"]
                n["errors"] += u["errors"]
                n["tokens"] += u["total_tokens"]
                if u["cost"] is not None:
                    n["costs"].append(u["cost"])
        for agent, start in first.items():
            if agent in nodes and _inside(start, since, until):
                nodes[agent]["traces"] += 1
    edges: dict[tuple[str, str, str], dict[str, Any]] = {}
    for d in derived:
        for h in d.handoffs:
            if _inside(h["start_ns"], since, until):
                e = edges.setdefault(
                    (h["from_agent"], h["to_agent"], h["protocol"]),
                    {"durations": [], "errors": 0, "costs": []},
                )
                e["durations"].append(h["duration_ns"])
                e["errors"] += h["error"]
                if h["cost"] is not None:
                    e["costs"].append(h["cost"])
    return (
        {
            a: (n["spans"], n["traces"], n["errors"], n["tokens"], _money(n["costs"]))
            for a, n in nodes.items()
        },
        {
            k: (
                len(e["durations"]),
                e["errors"],
                sum(e["durations"]) // len(e["durations"]),
                _money(e["costs"]),
                _nearest_rank_p95(e["durations"]),
            )
            for k, e in edges.items()
        },
    )


def _same(answered: dict, expected: dict) -> None:
    assert set(answered) == set(expected)
    for key, values in expected.items():
        got = answered[key]
        for a, b in zip(got, values, strict=True):
            if isinstance(b, float):
                assert a == pytest.approx(b, rel=1e-9, abs=1e-12), key
            else:
                assert a == b, key


_windows = st.sampled_from(
    [
        (None, None),
        (BASE + HOUR, None),
        (None, BASE + 3 * HOUR),
        (BASE + HOUR // 3, BASE + 3 * HOUR + HOUR // 2),
        (BASE + 2 * HOUR + 5, BASE + 2 * HOUR + HOUR // 2),
        (BASE + HOUR + 7, BASE + 4 * HOUR),
    ]
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    traces=st.lists(_trace, min_size=1, max_size=6),
    order=st.randoms(use_true_random=False),
    batches=st.integers(1, 5),
    resend=st.booleans(),
    expire=st.sampled_from([None, None, BASE + HOUR, BASE + 2 * HOUR + HOUR // 2]),
    windows=st.lists(_windows, min_size=2, max_size=3),
)
def test_rollup_answers_equal_answers_from_the_spans(
    store: Any,
    traces: list[Row],
    order: Any,
    batches: int,
    resend: bool,
    expire: int | None,
    windows: list[tuple[int | None, int | None]],
) -> None:
    spans = [span for trace in traces for span in _records(trace)]
    if resend:
        spans += spans[: len(spans) // 2]
    order.shuffle(spans)
    cuts = sorted(order.sample(range(1, len(spans)), min(batches - 1, len(spans) - 1)))
    for low, high in itertools.pairwise([0, *cuts, len(spans)]):
        store.write(spans[low:high])
    if expire is not None:
        while store.delete_expired(expire, 3):
            pass
    derived = _stored(store)
    for since, until in windows:
        for by in ("model", "agent", "service", "project", "day", "session", "user"):
            _same(
                _answered_cost(store, by, since, until), _expected_cost(derived, by, since, until)
            )
        graph = store.agents_graph(since, until)
        nodes, edges = _expected_graph(derived, since, until)
        _same(
            {
                n["id"]: (n["spans"], n["traces"], n["errors"], n["tokens"], n["cost"])
                for n in graph["nodes"]
                if n["spans"]
            },
            nodes,
        )
        answered = {
            (e["from"], e["to"], e["protocol"]): (
                e["count"],
                e["errors"],
                e["avg_ns"],
                e["cost"],
                e["p95_ns"],
            )
            for e in graph["edges"]
        }
        for key, want in edges.items():
            assert answered[key][4] == pytest.approx(want[4], rel=0.026, abs=1), key
            answered[key] = (*answered[key][:4], want[4])
        _same(answered, edges)


def test_a_store_from_before_rollups_builds_them_when_opened(tmp_path: Any) -> None:
    """Schema 2 (no roll-ups): opening it runs step 3, whose backfill gives the same answers."""
    path = str(tmp_path / "v2.db")
    first = open_storage(path)
    trace = {"session": "x", "user": "u", "spans": []}
    for hour in range(3):
        trace["spans"] = [
            {
                "parent": -1,
                "agent": "a",
                "model": "m1",
                "tokens": (3, 4),
                "cost": 0.5,
                "error": False,
                "handoff": ("b", "http"),
                "hour": hour,
                "offset": 17,
                "duration": 10**6 * (hour + 1),
                "service": "s1",
            }
        ]
        first.write(_records(trace))
    before = (first.cost_breakdown("model", None, None, 10), first.agents_graph(None, None))
    first.close()
    with sqlite3.connect(path) as conn:
        for table in t.ROLLUP_TABLES:
            conn.execute(f"DROP TABLE {table.name}")
        conn.execute("UPDATE plyra_meta SET value = '2'")
        conn.execute("PRAGMA user_version = 2")
    reopened = open_storage(path)
    try:
        after = (
            reopened.cost_breakdown("model", None, None, 10),
            reopened.agents_graph(None, None),
        )
        assert after == before
        assert before[0][0]["calls"] == 3
    finally:
        reopened.close()


@pytest.mark.parametrize(
    ("since", "until"),
    [(None, -(2**63)), (2**63 - 1, None), (-(2**63), 2**63 - 1), (None, -(2**63) + 5)],
)
def test_windows_at_the_ends_of_64_bit_time_are_answered(
    store: Any, since: Any, until: Any
) -> None:
    assert store.agents_graph(since, until)["edges"] is not None
    assert isinstance(store.cost_breakdown("model", since, until, 10), list)
