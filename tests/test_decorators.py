"""The decorators over the one wrapper engine: every callable shape, capture, errors, kinds."""

from __future__ import annotations

import asyncio
import inspect
import sys

import pytest
from opentelemetry.trace import StatusCode

import plyra_trace
from plyra_trace import GuardResult, SpanKind


def by_name(exporter):
    return {span.name: span for span in exporter.get_finished_spans()}


def test_bare_and_called_forms_create_kind_attributes(exporter):
    @plyra_trace.trace
    def step(x):
        return x

    @plyra_trace.trace(name="fetch", kind=SpanKind.RETRIEVER)
    def fetch(x):
        return x

    @plyra_trace.trace(kind="ROUTER")
    def route(x):
        return x

    step(1), fetch(2), route(3)
    spans = by_name(exporter)
    assert (
        spans["test_bare_and_called_forms_create_kind_attributes.<locals>.step"].attributes[
            "plyra.span.kind"
        ]
        == "CHAIN"
    )
    assert spans["fetch"].attributes["openinference.span.kind"] == "RETRIEVER"
    router = next(s for s in spans.values() if s.name.endswith("route"))
    assert router.attributes["plyra.span.kind"] == "ROUTER"
    assert router.attributes["openinference.span.kind"] == "CHAIN"


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown span kind"):
        plyra_trace.trace(kind="BANANA")


def test_agent_tool_guard_llm_attributes(exporter):
    @plyra_trace.agent(name="planner", framework="custom", pattern="ReAct")
    def planner(goal: str) -> str:
        return "ok"

    @plyra_trace.tool(name="search", description="Search the web")
    def search(query: str, limit: int = 3) -> list:
        return []

    @plyra_trace.guard(policy="safety", provider="plyra-guard")
    def check(text: str) -> GuardResult:
        return GuardResult("safety", "block", True, 0.9, {"why": "x"})

    @plyra_trace.llm(model="gpt-4o", provider="openai")
    def chat(prompt: str) -> dict:
        return {
            "model": "gpt-4o-2024-08-06",
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100},
        }

    planner("g"), search("q"), check("t"), chat("p")
    spans = by_name(exporter)
    agent = spans["planner"].attributes
    assert agent["agent.name"] == "planner" and agent["gen_ai.agent.name"] == "planner"
    assert agent["agent.framework"] == "custom" and agent["agent.pattern"] == "ReAct"
    assert agent["gen_ai.operation.name"] == "invoke_agent"
    tool = spans["search"].attributes
    assert tool["tool.name"] == "search" and tool["gen_ai.tool.name"] == "search"
    assert tool["tool.description"] == "Search the web"
    assert tool["gen_ai.operation.name"] == "execute_tool"
    assert '"limit"' in tool["tool.parameters"]
    guard = spans["safety"].attributes
    assert guard["plyra.span.kind"] == "GUARD" and guard["openinference.span.kind"] == "GUARDRAIL"
    assert guard["guard.action"] == "block" and guard["guard.triggered"] is True
    assert guard["guard.confidence"] == pytest.approx(0.9)
    assert guard["guard.details"] == '{"why": "x"}'
    assert guard["guard.provider"] == "plyra-guard"
    assert spans["safety"].status.status_code is not StatusCode.ERROR  # a block is not an error
    llm = spans["chat gpt-4o"].attributes
    assert llm["llm.model_name"] == "gpt-4o" and llm["gen_ai.request.model"] == "gpt-4o"
    assert llm["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert llm["llm.provider"] == "openai"
    assert llm["llm.token_count.prompt"] == 1000 and llm["gen_ai.usage.output_tokens"] == 100
    assert llm["llm.cost.total"] == pytest.approx(1000 * 2.5e-6 + 100 * 10e-6)


def test_input_keyed_by_parameter_and_self_skipped(exporter):
    class Agent:
        @plyra_trace.agent(name="a")
        def run(self, query, *extra, depth=2, **options):
            return {"n": 1}

        @plyra_trace.tool
        @classmethod
        def make(cls, name):
            return name

        @plyra_trace.tool
        @staticmethod
        def util(value):
            return value * 2

    Agent().run("q", 1, 2, depth=3, mode="fast")
    assert Agent.make("x") == "x"
    assert Agent.util(4) == 8
    spans = by_name(exporter)
    assert spans["a"].attributes["input.value"] == (
        '{"depth": 3, "query": "q", "extra": [1, 2], "mode": "fast"}'
    )
    assert spans["a"].attributes["input.mime_type"] == "application/json"
    assert spans["a"].attributes["output.value"] == '{"n": 1}'
    assert spans["make"].attributes["input.value"] == '{"name": "x"}'
    assert spans["util"].attributes["input.value"] == '{"value": 4}'
    assert spans["util"].attributes["output.value"] == "8"


def test_string_output_is_plain_text(exporter):
    @plyra_trace.tool
    def echo(text):
        return text

    echo("hello")
    span = by_name(exporter)["echo"]
    assert span.attributes["output.value"] == "hello"
    assert span.attributes["output.mime_type"] == "text/plain"


def test_capture_off_per_decorator(exporter):
    @plyra_trace.tool(capture_input=False)
    def secret_in(x):
        return "out"

    @plyra_trace.tool(capture_output=False)
    def secret_out(x):
        return "out"

    secret_in(1), secret_out(2)
    spans = by_name(exporter)
    assert "input.value" not in spans["secret_in"].attributes
    assert spans["secret_in"].attributes["output.value"] == "out"
    assert "output.value" not in spans["secret_out"].attributes


def test_signature_and_wrapped_are_kept():
    async def fetch(url: str, *, timeout: float = 1.0) -> bytes:
        return b""

    traced = plyra_trace.tool(fetch)
    assert inspect.signature(traced) == inspect.signature(fetch)
    assert traced.__wrapped__ is fetch
    assert traced.__name__ == "fetch"
    assert inspect.iscoroutinefunction(traced)

    def gen():
        yield 1

    assert inspect.isgeneratorfunction(plyra_trace.trace(gen))

    async def agen():
        yield 1

    assert inspect.isasyncgenfunction(plyra_trace.trace(agen))


def test_exception_is_recorded_and_reraised_unchanged(exporter):
    error = KeyError("missing")

    @plyra_trace.tool
    def broken():
        raise error

    with pytest.raises(KeyError) as caught:
        broken()
    assert caught.value is error
    # The traceback still points at the user's raise.
    assert caught.traceback[-1].name == "broken"
    span = by_name(exporter)["broken"]
    assert span.status.status_code is StatusCode.ERROR
    assert "KeyError" in span.status.description
    assert span.events[0].name == "exception"
    assert span.events[0].attributes["exception.type"] == "KeyError"


async def test_async_function_and_cancellation(exporter):
    @plyra_trace.agent(name="slow")
    async def slow():
        await asyncio.sleep(10)

    @plyra_trace.agent(name="fast")
    async def fast(x):
        await asyncio.sleep(0)
        return x + 1

    assert await fast(1) == 2
    task = asyncio.create_task(slow())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    spans = by_name(exporter)
    assert spans["fast"].attributes["output.value"] == "2"
    assert spans["slow"].status.status_code is not StatusCode.ERROR
    assert spans["slow"].attributes["plyra.cancelled"] is True


def test_generator_span_covers_iteration(exporter):
    @plyra_trace.llm(model="gpt-4o")
    def stream(prompt):
        for word in ("hello", " ", "world"):
            yield word

    @plyra_trace.tool
    def inner():
        return 1

    @plyra_trace.trace
    def consumer():
        pieces = []
        for piece in stream("p"):
            pieces.append(piece)
            inner()  # runs in the consumer's context, not the generator's
        return "".join(pieces)

    assert consumer() == "hello world"
    spans = by_name(exporter)
    streamed = spans["chat gpt-4o"]
    assert streamed.attributes["output.value"] == "hello world"
    assert streamed.attributes["plyra.stream.items"] == 3
    consumer_span = next(s for s in spans.values() if s.name.endswith("consumer"))
    assert streamed.parent.span_id == consumer_span.context.span_id
    assert spans["inner"].parent.span_id == consumer_span.context.span_id
    assert streamed.end_time >= spans["inner"].end_time


def test_generator_close_and_error(exporter):
    @plyra_trace.trace(name="numbers")
    def numbers():
        yield from range(100)

    @plyra_trace.trace(name="failing")
    def failing():
        yield 1
        raise ValueError("bad item")

    iterator = numbers()
    next(iterator), next(iterator)
    iterator.close()
    with pytest.raises(ValueError, match="bad item"):
        list(failing())
    spans = by_name(exporter)
    assert spans["numbers"].status.status_code is not StatusCode.ERROR
    assert spans["numbers"].attributes["plyra.stream.items"] == 2
    assert spans["failing"].status.status_code is StatusCode.ERROR


def test_generator_send_and_throw_pass_through(exporter):
    @plyra_trace.trace(name="echo")
    def echo():
        received = None
        while True:
            try:
                received = yield received
            except KeyError:
                received = "caught"

    gen = echo()
    assert next(gen) is None
    assert gen.send("a") == "a"
    assert gen.throw(KeyError("k")) == "caught"
    gen.close()
    assert by_name(exporter)["echo"].end_time is not None


async def test_async_generator(exporter):
    @plyra_trace.tool(name="tokens")
    async def tokens(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    @plyra_trace.tool(name="broken_stream")
    async def broken_stream():
        yield 1
        raise RuntimeError("stream died")

    assert [t async for t in tokens(3)] == [0, 1, 2]
    with pytest.raises(RuntimeError):
        async for _ in broken_stream():
            pass
    agen = tokens(10)
    await agen.__anext__()
    await agen.aclose()
    spans = [s for s in exporter.get_finished_spans() if s.name == "tokens"]
    assert spans[0].attributes["output.value"] == "[0, 1, 2]"
    assert spans[1].attributes["plyra.stream.items"] == 1
    assert by_name(exporter)["broken_stream"].status.status_code is StatusCode.ERROR


def test_nested_agents_record_in_process_handoff(exporter):
    @plyra_trace.agent(name="researcher")
    def researcher(q):
        return q

    @plyra_trace.agent(name="orchestrator")
    def orchestrator(q):
        return researcher(q)

    orchestrator("q")
    spans = by_name(exporter)
    child = spans["researcher"].attributes
    assert child["agent.handoff.from"] == "orchestrator"
    assert child["agent.handoff.to"] == "researcher"
    assert child["agent.handoff.protocol"] == "in-process"
    assert "agent.handoff.from" not in spans["orchestrator"].attributes
    assert spans["researcher"].parent.span_id == spans["orchestrator"].context.span_id


def test_non_serialisable_values_fall_back_to_repr(exporter):
    class Opaque:
        def __repr__(self):
            return "<Opaque 42>"

    class Hostile:
        def __repr__(self):
            raise RuntimeError("no repr for you")

    @plyra_trace.tool
    def takes(a, b, c):
        return {"set": {1}, "obj": Opaque()}

    loop: list = []
    loop.append(loop)
    takes(Opaque(), Hostile(), loop)
    attributes = by_name(exporter)["takes"].attributes
    assert '"<Opaque 42>"' in attributes["input.value"]
    assert "Hostile object" in attributes["input.value"]
    assert attributes["output.value"] == '{"set": [1], "obj": "<Opaque 42>"}'


def test_redaction_by_default_and_with_hook(exporter):
    @plyra_trace.tool
    def login(username, password, options):
        return {"token": "abc", "ok": True}

    login("ann", "hunter2", {"api_key": "sk-1", "nested": {"Authorization": "Bearer x"}})
    attributes = by_name(exporter)["login"].attributes
    assert "hunter2" not in attributes["input.value"]
    assert "sk-1" not in attributes["input.value"] and "Bearer x" not in attributes["input.value"]
    assert attributes["input.value"].count("[REDACTED]") == 3
    assert attributes["output.value"] == '{"token": "[REDACTED]", "ok": true}'


def test_user_redactor_and_extra_keys():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()

    def mask_emails(key, value):
        return "***@***" if isinstance(value, str) and "@" in value else value

    handle = plyra_trace.init(
        "t", exporter=memory, batch=False, console=False, redact_keys=["ssn"], redactor=mask_emails
    )

    @plyra_trace.tool
    def register(email, ssn):
        return None

    register("ann@example.com", "123-45-6789")
    handle.shutdown()
    value = memory.get_finished_spans()[0].attributes["input.value"]
    assert value == '{"email": "***@***", "ssn": "[REDACTED]"}'


def test_large_input_is_truncated_with_marker(exporter):
    @plyra_trace.tool
    def ingest(blob):
        return len(blob)

    blob = "x" * (10 * 1024 * 1024)
    assert ingest(blob) == len(blob)
    value = by_name(exporter)["ingest"].attributes["input.value"]
    assert len(value) < 40_000
    assert "truncated" in value


def test_capture_disabled_globally():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    handle = plyra_trace.init("t", exporter=memory, batch=False, console=False, capture_io=False)

    @plyra_trace.tool
    def f(x):
        return x

    f(1)
    handle.shutdown()
    attributes = memory.get_finished_spans()[0].attributes
    assert "input.value" not in attributes and "output.value" not in attributes


def test_decorating_a_non_callable_is_a_clear_error():
    with pytest.raises(TypeError, match="callables"):
        plyra_trace.tool(42)


def test_instrumentation_failure_never_reaches_user_code(exporter, caplog, monkeypatch):
    from plyra_trace import _runtime

    class BrokenTracer:
        def start_span(self, *args, **kwargs):
            raise RuntimeError("tracer exploded")

    monkeypatch.setattr(_runtime, "tracer", BrokenTracer())

    @plyra_trace.agent
    def survives(x):
        return x * 2

    assert survives(21) == 42
    assert survives(1) == 2


def test_recursion_limit_not_hit_by_deep_nesting(exporter):
    @plyra_trace.trace(name="deep", capture_input=False, capture_output=False)
    def deep(n):
        return 0 if n == 0 else 1 + deep(n - 1)

    depth = min(200, sys.getrecursionlimit() // 10)
    assert deep(depth) == depth
    assert len(exporter.get_finished_spans()) == depth + 1
