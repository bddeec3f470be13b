"""LLM usage and cost, GuardResult validation, SpanBuilder, and the compat processors."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import plyra_trace
from plyra_trace import GuardResult, SpanBuilder, SpanKind
from plyra_trace._llm import extract_usage
from plyra_trace.compat import OpenInferenceSpanProcessor, OpenLLMetrySpanProcessor


def only(exporter, name):
    (span,) = [s for s in exporter.get_finished_spans() if s.name == name]
    return span


# --- usage extraction ---


def test_openai_chat_usage_object_with_cached_tokens():
    response = SimpleNamespace(
        model="gpt-4o",
        usage=SimpleNamespace(
            prompt_tokens=1000,
            completion_tokens=200,
            prompt_tokens_details=SimpleNamespace(cached_tokens=400),
            completion_tokens_details=SimpleNamespace(reasoning_tokens=50),
        ),
    )
    usage = extract_usage(response)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (1000, 200, 400)
    assert usage.reasoning_tokens == 50


def test_anthropic_usage_counts_cache_tokens_as_input():
    response = {
        "model": "claude-sonnet-4-5",
        "usage": {
            "input_tokens": 100,
            "output_tokens": 50,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 200,
        },
    }
    usage = extract_usage(response)
    assert usage.input_tokens == 1300
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (1000, 200)


def test_openai_responses_api_usage():
    usage = extract_usage(
        {
            "usage": {
                "input_tokens": 10,
                "output_tokens": 5,
                "input_tokens_details": {"cached_tokens": 4},
            }
        }
    )
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (10, 5, 4)


def test_no_usage_means_no_token_attributes(exporter):
    @plyra_trace.llm(model="gpt-4o")
    def chat():
        return "plain text"

    chat()
    attributes = only(exporter, "chat gpt-4o").attributes
    assert "llm.token_count.prompt" not in attributes and "llm.cost.total" not in attributes


def test_cached_tokens_are_priced_at_the_cache_rate(exporter):
    @plyra_trace.llm(model="gpt-4o", provider="openai")
    def chat():
        return {
            "usage": {
                "prompt_tokens": 1000,
                "completion_tokens": 0,
                "prompt_tokens_details": {"cached_tokens": 1000},
            }
        }

    chat()
    attributes = only(exporter, "chat gpt-4o").attributes
    assert attributes["llm.token_count.prompt_details.cache_read"] == 1000
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert attributes["llm.cost.prompt"] == pytest.approx(1000 * 1.25e-6)  # half the input rate


def test_anthropic_response_is_priced(exporter):
    @plyra_trace.llm(provider="anthropic", name="chat")
    def chat():
        return {
            "model": "claude-sonnet-4-5",
            "usage": {"input_tokens": 1000, "output_tokens": 1000},
        }

    chat()
    attributes = only(exporter, "chat").attributes
    assert attributes["llm.model_name"] == "claude-sonnet-4-5"
    assert attributes["llm.cost.total"] == pytest.approx(1000 * 3e-6 + 1000 * 15e-6)


def test_unknown_model_gets_no_cost_never_a_wrong_one(exporter):
    @plyra_trace.llm(model="in-house-llm-7")
    def chat():
        return {"usage": {"prompt_tokens": 10, "completion_tokens": 10}}

    chat()
    attributes = only(exporter, "chat in-house-llm-7").attributes
    assert attributes["llm.token_count.total"] == 20
    assert not any(key.startswith("llm.cost") for key in attributes)


def test_record_llm_usage_inside_a_call(exporter):
    @plyra_trace.llm(model="gpt-4o-mini")
    def chat():
        plyra_trace.record_llm_usage(input_tokens=2000, output_tokens=100)
        return "text"

    chat()
    attributes = only(exporter, "chat gpt-4o-mini").attributes
    assert attributes["gen_ai.usage.input_tokens"] == 2000
    assert attributes["llm.cost.total"] == pytest.approx(2000 * 0.15e-6 + 100 * 0.6e-6)


# --- GuardResult ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "explode"}, "action must be one of"),
        ({"confidence": 1.5}, r"confidence must be in \[0, 1\]"),
        ({"confidence": -0.1}, "confidence"),
        ({"confidence": float("nan")}, "confidence"),
        ({"triggered": "yes"}, "triggered must be a bool"),
        ({"policy": ""}, "policy"),
        ({"details": ["x"]}, "details"),
    ],
)
def test_guard_result_validates(kwargs, message):
    values = {"policy": "p", "action": "allow", "triggered": False, "confidence": 0.5, **kwargs}
    with pytest.raises(ValueError, match=message):
        GuardResult(**values)


def test_guard_block_is_not_an_error(exporter):
    @plyra_trace.guard(name="input-safety", policy="content-safety")
    def check(text):
        return GuardResult("content-safety", "block", True, 0.95, {"reason": "unsafe"})

    result = check("dangerous")
    assert result.blocked
    span = only(exporter, "input-safety")
    assert span.status.status_code is not StatusCode.ERROR
    assert span.attributes["guard.details"] == '{"reason": "unsafe"}'


# --- SpanBuilder ----------------------------------------------------------------------------------


def test_span_builder_as_on_the_package_page(exporter):
    def do_complex_work():
        with plyra_trace.SpanBuilder("inner-tool", kind=SpanKind.TOOL) as inner:
            inner.set_tool("calculator", description="adds")
        return {"answer": 42}

    with SpanBuilder("orchestrator-step", kind=SpanKind.AGENT) as span:
        span.set_input({"query": "analyze competitors"})
        span.set_agent(name="orchestrator", framework="custom")
        result = do_complex_work()
        span.set_output(result)
        span.add_event("checkpoint", attributes={"step": 1})

    step = only(exporter, "orchestrator-step")
    assert step.attributes["plyra.span.kind"] == "AGENT"
    assert step.attributes["agent.name"] == "orchestrator"
    assert step.attributes["input.value"] == '{"query": "analyze competitors"}'
    assert step.attributes["output.value"] == '{"answer": 42}'
    assert step.events[0].name == "checkpoint"
    assert step.status.status_code is not StatusCode.ERROR
    inner = only(exporter, "inner-tool")
    assert inner.parent.span_id == step.context.span_id
    assert inner.attributes["tool.name"] == "calculator"


def test_span_builder_set_agent_makes_nested_agents_handoffs(exporter):
    @plyra_trace.agent(name="worker")
    def worker():
        return 1

    with SpanBuilder("step") as span:
        span.set_agent("boss")
        worker()
    assert only(exporter, "worker").attributes["agent.handoff.from"] == "boss"


def test_span_builder_error_and_async(exporter):
    error = RuntimeError("boom")
    with pytest.raises(RuntimeError) as caught, SpanBuilder("failing"):
        raise error
    assert caught.value is error
    assert only(exporter, "failing").status.status_code is StatusCode.ERROR

    async def run():
        async with SpanBuilder("async-step", kind="LLM") as span:
            span.set_llm("gpt-4o", input_tokens=10, output_tokens=5)
            span.set_guard(GuardResult("p", "flag", True, 0.3))

    asyncio.run(run())
    attributes = only(exporter, "async-step").attributes
    assert attributes["llm.token_count.total"] == 15
    assert attributes["guard.action"] == "flag"
    assert attributes["llm.cost.total"] > 0


# --- compat ---------------------------------------------------------------------------------------


def finished_span(attributes, name="span"):
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("foreign").start_as_current_span(name, attributes=attributes):
        pass
    (span,) = memory.get_finished_spans()
    return span


def test_openllmetry_processor_maps_traceloop_spans():
    workflow = finished_span(
        {
            "traceloop.span.kind": "agent",
            "traceloop.entity.name": "planner",
            "traceloop.entity.input": '{"goal": "x"}',
            "traceloop.association.properties.session_id": "s-1",
        }
    )
    mapped = OpenLLMetrySpanProcessor().transform(workflow)
    assert isinstance(mapped, ReadableSpan)
    assert mapped.attributes["plyra.span.kind"] == "AGENT"
    assert mapped.attributes["agent.name"] == "planner"
    assert mapped.attributes["input.value"] == '{"goal": "x"}'
    assert mapped.attributes["input.mime_type"] == "application/json"
    assert mapped.attributes["session.id"] == "s-1"
    assert mapped.context == workflow.context and mapped.end_time == workflow.end_time

    chat = finished_span(
        {
            "llm.request.type": "chat",
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.prompt_tokens": 12,
            "gen_ai.usage.completion_tokens": 3,
        }
    )
    mapped = OpenLLMetrySpanProcessor().transform(chat)
    assert mapped.attributes["plyra.span.kind"] == "LLM"
    assert mapped.attributes["llm.provider"] == "openai"
    assert mapped.attributes["llm.token_count.total"] == 15


def test_openllmetry_processor_in_an_init_pipeline(receiver):
    handle = plyra_trace.init(
        "compat", endpoint=receiver.url, span_processors=[OpenLLMetrySpanProcessor()]
    )
    tracer = trace.get_tracer("traceloop.like")
    with tracer.start_as_current_span(
        "tool.task", attributes={"traceloop.span.kind": "tool", "traceloop.entity.name": "grep"}
    ):
        pass
    handle.shutdown()
    (span,) = receiver.wait_for(lambda s: len(s) == 1)
    assert span.attributes["plyra.span.kind"] == "TOOL"
    assert span.attributes["tool.name"] == "grep"


def test_openinference_spans_get_a_plyra_kind(exporter):
    tracer = trace.get_tracer("openinference.instrumentation.fake")
    with tracer.start_as_current_span(
        "guardrail", attributes={"openinference.span.kind": "GUARDRAIL"}
    ):
        pass
    with tracer.start_as_current_span(
        "retrieve", attributes={"openinference.span.kind": "RETRIEVER"}
    ):
        pass
    guard, retrieve = exporter.get_finished_spans()
    assert guard.attributes["plyra.span.kind"] == "GUARD"
    assert retrieve.attributes["plyra.span.kind"] == "RETRIEVER"
    untouched = finished_span({"plyra.span.kind": "TOOL", "openinference.span.kind": "TOOL"})
    assert OpenInferenceSpanProcessor().transform(untouched) is untouched


def test_transforming_processor_forwards_outside_plyra():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(
        OpenLLMetrySpanProcessor(next_processor=SimpleSpanProcessor(memory))
    )
    with provider.get_tracer("x").start_as_current_span(
        "t", attributes={"traceloop.span.kind": "task"}
    ):
        pass
    assert memory.get_finished_spans()[0].attributes["plyra.span.kind"] == "CHAIN"
