"""Trace summaries are right whatever the arrival order; cost is priced, kept or left unpriced."""

from __future__ import annotations

import genai_prices
import pytest

from tests.collector.conftest import make_span, sid, tid


def _expected(model: str, provider: str | None, **usage: int) -> float:
    price = genai_prices.calc_price(genai_prices.Usage(**usage), model, provider_id=provider)
    return float(price.total_price)


def test_out_of_order_arrival_across_batches_and_services(collector):
    llm = {
        "llm__model_name": "gpt-4o",
        "llm__token_count__prompt": 1000,
        "llm__token_count__completion": 200,
    }
    # Batch 1: a grandchild from service B arrives first, its parent and the root are missing.
    collector.send(
        make_span(40, 3, "model-call", parent=2, start_ms=5, duration_ms=5, **llm), service="b"
    )
    early = collector.trace(tid(40))
    assert early["complete"] is False
    assert early["root_name"] == "model-call"
    assert early["agents"] == []
    # Batch 2: the root (with the agent) from service A, 100 ms long, with an error elsewhere.
    collector.send(
        make_span(40, 1, "handle-request", duration_ms=100, agent__name="router"), service="a"
    )
    middle = collector.trace(tid(40))
    assert middle["root_name"] == "handle-request"
    assert middle["complete"] is True
    # Batch 3: the missing middle span, which links the grandchild to the root.
    collector.send(
        make_span(40, 2, "sub-agent", parent=1, start_ms=2, duration_ms=150, error=True),
        service="b",
    )
    trace = collector.trace(tid(40))
    assert trace["root_span_id"] == sid(1)
    assert trace["services"] == ["a", "b"]
    assert trace["span_count"] == 3
    assert trace["error_count"] == 1
    assert trace["duration_ns"] == 152_000_000  # ends with the late child, not the root
    assert trace["total_tokens"] == 1200
    assert trace["agents"] == ["router"]
    assert trace["cost"] == pytest.approx(
        _expected("gpt-4o", "openai", input_tokens=1000, output_tokens=200)
    )
    assert [(s["name"], s["depth"]) for s in trace["spans"]] == [
        ("handle-request", 0),
        ("sub-agent", 1),
        ("model-call", 2),
    ]
    # The grandchild's agent attribution followed its late ancestors.
    assert trace["spans"][2]["agent"] == "router"
    by_agent = collector.get("/api/v1/cost", by="agent")["items"]
    assert by_agent[0]["key"] == "router"
    assert by_agent[0]["total_tokens"] == 1200


def test_resending_a_span_does_not_double_count(collector):
    span = make_span(41, 1, "once", llm__model_name="gpt-4o", llm__token_count__prompt=10)
    collector.send(span)
    collector.send(span)
    trace = collector.trace(tid(41))
    assert trace["span_count"] == 1
    assert trace["input_tokens"] == 10


def test_known_model_is_priced_with_cache_tokens(collector):
    # OpenInference: prompt tokens include cached ones.
    collector.send(
        make_span(
            42,
            1,
            "cached-call",
            llm__model_name="gpt-4o",
            llm__provider="openai",
            llm__token_count__prompt=10_000,
            llm__token_count__completion=500,
            llm__token_count__prompt_details__cache_read=8_000,
        )
    )
    span = collector.trace(tid(42))["spans"][0]
    expected = _expected(
        "gpt-4o", "openai", input_tokens=10_000, output_tokens=500, cache_read_tokens=8_000
    )
    uncached = _expected("gpt-4o", "openai", input_tokens=10_000, output_tokens=500)
    assert span["cost"] == pytest.approx(expected)
    assert span["cost"] < uncached
    assert span["cost_source"] == "genai-prices"


def test_anthropic_style_input_excluding_cache_is_priced_correctly(collector):
    collector.send(
        make_span(
            43,
            1,
            "claude",
            gen_ai__provider__name="anthropic",
            gen_ai__request__model="claude-sonnet-4-5",
            gen_ai__usage__input_tokens=100,
            gen_ai__usage__output_tokens=50,
            gen_ai__usage__cache_read__input_tokens=4_000,
            gen_ai__usage__cache_creation__input_tokens=1_000,
        )
    )
    span = collector.trace(tid(43))["spans"][0]
    expected = _expected(
        "claude-sonnet-4-5",
        "anthropic",
        input_tokens=5_100,
        output_tokens=50,
        cache_read_tokens=4_000,
        cache_write_tokens=1_000,
    )
    assert span["cost"] == pytest.approx(expected)


def test_unknown_model_is_unpriced_not_zero(collector):
    collector.send(
        make_span(44, 1, "root"),
        make_span(
            44,
            2,
            "mystery",
            parent=1,
            llm__model_name="house-model-9000",
            llm__token_count__prompt=5,
            llm__token_count__completion=5,
        ),
    )
    trace = collector.trace(tid(44))
    assert trace["cost"] is None
    assert trace["unpriced_count"] == 1
    assert trace["spans"][1]["cost"] is None
    models = {row["key"]: row for row in collector.get("/api/v1/cost", by="model")["items"]}
    assert models["house-model-9000"]["cost"] is None
    assert models["house-model-9000"]["unpriced"] == 1


def test_cost_on_the_span_is_kept(collector):
    collector.send(
        make_span(
            45,
            1,
            "priced-by-sdk",
            llm__model_name="gpt-4o",
            llm__token_count__prompt=1000,
            llm__cost__total=1.25,
        ),
        make_span(
            46, 1, "prompt-and-completion", llm__cost__prompt=0.5, llm__cost__completion=0.25
        ),
    )
    assert collector.trace(tid(45))["cost"] == pytest.approx(1.25)
    assert collector.trace(tid(45))["spans"][0]["cost_source"] == "span"
    assert collector.trace(tid(46))["cost"] == pytest.approx(0.75)


def test_roll_ups_by_every_dimension(collector):
    def call(trace, span, parent, model, tokens, **extra):
        return make_span(
            trace,
            span,
            "llm",
            parent=parent,
            llm__model_name=model,
            llm__token_count__prompt=tokens,
            llm__cost__total=tokens / 1000,
            **extra,
        )

    collector.send(
        make_span(50, 1, "t50", agent__name="alpha", session__id="s-1", user__id="ann"),
        call(50, 2, 1, "m-a", 1000),
        call(50, 3, 1, "m-b", 2000),
        service="svc-1",
        plyra__project="proj-x",
    )
    collector.send(
        make_span(51, 1, "t51", agent__name="beta", session__id="s-1", user__id="ann"),
        call(51, 2, 1, "m-a", 4000),
        make_span(52, 1, "t52", agent__name="beta", session__id="s-2", user__id="bob"),
        call(52, 2, 1, "m-a", 8000, base_ns=1_700_086_400_000_000_000),
        service="svc-2",
        plyra__project="proj-x",
    )

    def rollup(by):
        return {row["key"]: row["cost"] for row in collector.get("/api/v1/cost", by=by)["items"]}

    assert rollup("model") == pytest.approx({"m-a": 13.0, "m-b": 2.0})
    assert rollup("agent") == pytest.approx({"alpha": 3.0, "beta": 12.0})
    assert rollup("session") == pytest.approx({"s-1": 7.0, "s-2": 8.0})
    assert rollup("user") == pytest.approx({"ann": 7.0, "bob": 8.0})
    assert rollup("service") == pytest.approx({"svc-1": 3.0, "svc-2": 12.0})
    assert rollup("project") == pytest.approx({"proj-x": 15.0})
    assert rollup("day") == pytest.approx({"2023-11-14": 7.0, "2023-11-15": 8.0})
    assert rollup("trace") == pytest.approx({tid(50): 3.0, tid(51): 4.0, tid(52): 8.0})
    ordered = [row["key"] for row in collector.get("/api/v1/cost", by="trace")["items"]]
    assert ordered == [tid(52), tid(51), tid(50)]  # most expensive first


def test_one_call_instrumented_twice_is_counted_once(collector):
    # OpenInference's Anthropic span wraps the anthropic SDK's own gen_ai span for the same call.
    usage = {"gen_ai__usage__input_tokens": 1000, "gen_ai__usage__output_tokens": 100}
    collector.send(
        make_span(47, 1, "agent", agent__name="solo"),
        make_span(
            47,
            2,
            "Messages",
            parent=1,
            openinference__span__kind="LLM",
            llm__model_name="claude-sonnet-4-5",
            llm__provider="anthropic",
            llm__token_count__prompt=1000,
            llm__token_count__completion=100,
        ),
        make_span(
            47,
            3,
            "chat claude-sonnet-4-5",
            parent=2,
            gen_ai__request__model="claude-sonnet-4-5",
            gen_ai__provider__name="anthropic",
            **usage,
        ),
        # A second, genuinely separate call with other counts still counts.
        make_span(
            47,
            4,
            "chat again",
            parent=1,
            gen_ai__request__model="claude-sonnet-4-5",
            **{"gen_ai__usage__input_tokens": 10, "gen_ai__usage__output_tokens": 1},
        ),
    )
    one = _expected("claude-sonnet-4-5", "anthropic", input_tokens=1000, output_tokens=100)
    two = _expected("claude-sonnet-4-5", "anthropic", input_tokens=10, output_tokens=1)
    trace = collector.trace(tid(47))
    assert trace["total_tokens"] == 1111
    assert trace["cost"] == pytest.approx(one + two)
    assert trace["spans"][2]["cost"] == pytest.approx(one)  # the span itself keeps its data
    agents = collector.get("/api/v1/cost", by="agent")["items"]
    assert agents[0]["total_tokens"] == 1111
    assert agents[0]["calls"] == 2
    flame = collector.get(f"/api/v1/traces/{tid(47)}/flamegraph", weight="tokens")
    assert flame["root"]["value"] == 1111
