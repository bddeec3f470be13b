"""Auto-instrumentation: OpenAI and Anthropic against mocked HTTP, LangGraph with a fake model."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import anthropic
import httpx2
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import plyra_trace
from plyra_trace import _auto, _instrument
from plyra_trace import _semconv as sc
from plyra_trace._llm import LLMUsage, cost_attributes

Handler = Callable[[httpx2.Request], httpx2.Response]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def _clean_instrumentation() -> Iterator[None]:
    yield
    plyra_trace.uninstrument()


def _openai(handler: Handler) -> openai.OpenAI:
    transport = httpx2.MockTransport(handler)
    return openai.OpenAI(api_key="k", max_retries=0, http_client=httpx2.Client(transport=transport))


def _anthropic(handler: Handler) -> anthropic.Anthropic:
    transport = httpx2.MockTransport(handler)
    return anthropic.Anthropic(
        api_key="k", max_retries=0, http_client=httpx2.Client(transport=transport)
    )


_CHAT = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 40},
    },
}

_MESSAGE = {
    "id": "m1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 50,
        "output_tokens": 10,
        "cache_read_input_tokens": 30,
        "cache_creation_input_tokens": 0,
    },
}


def _json(body: dict[str, Any], status: int = 200) -> Handler:
    return lambda request: httpx2.Response(status, json=body)


def _sse(events: list[tuple[str | None, Any]]) -> Handler:
    lines = []
    for event, data in events:
        if event is not None:
            lines.append(f"event: {event}")
        lines.append(f"data: {data if isinstance(data, str) else json.dumps(data)}\n")
    body = ("\n".join(lines) + "\n").encode()
    headers = {"content-type": "text/event-stream"}
    return lambda request: httpx2.Response(200, content=body, headers=headers)


def _by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def _with_tokens(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if any(k.startswith(("llm.token_count.", "gen_ai.usage.")) for k in s.attributes or {})
    ]


def _expected_cost(prompt: int, completion: int, cached: int, model: str, provider: str) -> float:
    usage = LLMUsage(prompt, completion, cache_read_tokens=cached)
    return cost_attributes(usage, model, provider)[sc.LLM_COST_TOTAL]


# --- OpenAI ---------------------------------------------------------------------------


def test_openai_call_is_an_llm_span_under_the_agent(exporter: InMemorySpanExporter) -> None:
    assert "openai" in plyra_trace.instrument("openai")
    client = _openai(_json(_CHAT))

    @plyra_trace.agent
    def planner() -> str:
        response = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
        return response.choices[0].message.content or ""

    with plyra_trace.session("s-1"), plyra_trace.user("u-1"):
        assert planner() == "hi"

    spans = _by_name(exporter)
    llm, agent = spans["ChatCompletion"], spans["planner"]
    attributes = llm.attributes or {}
    assert llm.parent is not None and llm.parent.span_id == agent.context.span_id
    assert attributes[sc.PLYRA_SPAN_KIND] == "LLM"
    assert attributes[sc.LLM_MODEL_NAME] == "gpt-4o-mini-2024-07-18"
    assert attributes[sc.LLM_PROVIDER] == "openai"
    assert attributes[sc.LLM_TOKENS_PROMPT] == 100
    assert attributes[sc.LLM_TOKENS_COMPLETION] == 20
    assert attributes[sc.LLM_TOKENS_CACHE_READ] == 40
    expected = _expected_cost(100, 20, 40, "gpt-4o-mini-2024-07-18", "openai")
    assert attributes[sc.LLM_COST_TOTAL] == pytest.approx(expected)
    # cached input is cheaper: the cost is below pricing all 100 prompt tokens at full rate
    assert expected < _expected_cost(100, 20, 0, "gpt-4o-mini-2024-07-18", "openai")
    assert attributes[sc.SESSION_ID] == "s-1"
    assert attributes[sc.USER_ID] == "u-1"


def test_openai_streaming_counts_usage_from_the_last_chunk(exporter: InMemorySpanExporter) -> None:
    plyra_trace.instrument("openai")
    chunk: dict[str, Any] = {
        "id": "c2",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
    }
    events: list[tuple[str | None, Any]] = [
        (
            None,
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "he"}}]},
        ),
        (None, {**chunk, "choices": [{"index": 0, "delta": {"content": "llo"}}]}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        (
            None,
            {
                **chunk,
                "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            },
        ),
        (None, "[DONE]"),
    ]
    client = _openai(_sse(events))

    @plyra_trace.tool
    def summarise() -> str:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert summarise() == "hello"
    spans = _by_name(exporter)
    attributes = spans["ChatCompletion"].attributes or {}
    assert spans["ChatCompletion"].parent.span_id == spans["summarise"].context.span_id  # type: ignore[union-attr]
    assert attributes[sc.LLM_TOKENS_PROMPT] == 7
    assert attributes[sc.LLM_TOKENS_COMPLETION] == 3
    assert attributes[sc.LLM_COST_TOTAL] == pytest.approx(
        _expected_cost(7, 3, 0, "gpt-4o-mini", "openai")
    )
    assert attributes["llm.output_messages.0.message.content"] == "hello"


def test_openai_tool_calls_are_recorded(exporter: InMemorySpanExporter) -> None:
    plyra_trace.instrument("openai")
    body = json.loads(json.dumps(_CHAT))
    body["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    }
    body["choices"][0]["finish_reason"] = "tool_calls"
    client = _openai(_json(body))
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    response = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}], tools=tools
    )
    assert response.choices[0].message.tool_calls
    attributes = _by_name(exporter)["ChatCompletion"].attributes or {}
    prefix = "llm.output_messages.0.message.tool_calls.0.tool_call.function."
    assert attributes[prefix + "name"] == "get_weather"
    assert json.loads(str(attributes[prefix + "arguments"])) == {"city": "Oslo"}
    assert attributes[sc.LLM_TOKENS_TOTAL] == 120
    assert sc.LLM_COST_TOTAL in attributes


def test_openai_error_passes_through_and_marks_the_span(exporter: InMemorySpanExporter) -> None:
    plyra_trace.instrument("openai")
    client = _openai(_json({"error": {"message": "boom", "type": "server_error"}}, status=500))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    span = _by_name(exporter)["ChatCompletion"]
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})[sc.PLYRA_SPAN_KIND] == "LLM"
    assert sc.LLM_COST_TOTAL not in (span.attributes or {})


async def test_openai_async_client(exporter: InMemorySpanExporter) -> None:
    plyra_trace.instrument("openai")
    client = openai.AsyncOpenAI(
        api_key="k",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(_json(_CHAT))),
    )

    @plyra_trace.agent
    async def planner() -> None:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )

    await planner()
    spans = _by_name(exporter)
    assert spans["ChatCompletion"].parent.span_id == spans["planner"].context.span_id  # type: ignore[union-attr]
    assert (spans["ChatCompletion"].attributes or {})[sc.LLM_TOKENS_PROMPT] == 100


def test_llm_decorator_around_an_instrumented_call_counts_tokens_once(
    exporter: InMemorySpanExporter,
) -> None:
    plyra_trace.instrument("openai")
    client = _openai(_json(_CHAT))

    @plyra_trace.llm(model="gpt-4o-mini")
    def ask() -> Any:
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )

    ask()
    spans = _by_name(exporter)
    counted = _with_tokens(exporter)
    assert [s.name for s in counted] == ["ChatCompletion"]
    outer = spans["chat gpt-4o-mini"].attributes or {}
    assert outer[sc.PLYRA_SPAN_KIND] == "LLM"
    assert outer[_auto.USAGE_COUNTED_ON] == "child"
    assert sc.LLM_COST_TOTAL not in outer
    assert [(s.attributes or {})[sc.LLM_TOKENS_TOTAL] for s in counted] == [120]


def test_uninstrument_stops_new_spans(exporter: InMemorySpanExporter) -> None:
    plyra_trace.instrument("openai")
    assert plyra_trace.uninstrument("openai") == []
    _openai(_json(_CHAT)).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    assert exporter.get_finished_spans() == ()


# --- Anthropic ---------------------------------------------------------------------------


def test_anthropic_call_has_one_span_with_tokens(exporter: InMemorySpanExporter) -> None:
    plyra_trace.instrument("anthropic")
    client = _anthropic(_json(_MESSAGE))

    @plyra_trace.agent
    def writer() -> None:
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )

    writer()
    spans = _by_name(exporter)
    counted = _with_tokens(exporter)
    assert [s.name for s in counted] == ["messages.create"]
    llm = counted[0]
    attributes = llm.attributes or {}
    assert llm.parent.span_id == spans["writer"].context.span_id  # type: ignore[union-attr]
    assert attributes[sc.PLYRA_SPAN_KIND] == "LLM"
    assert attributes[sc.LLM_TOKENS_PROMPT] == 80  # 50 uncached + 30 cache reads
    assert attributes[sc.LLM_TOKENS_CACHE_READ] == 30
    assert attributes[sc.LLM_COST_TOTAL] == pytest.approx(
        _expected_cost(80, 10, 30, "claude-sonnet-4-5", "anthropic")
    )
    # anthropic's own span for the same call stays, without tokens, beneath it
    sdk = spans["anthropic.messages.create"]
    assert sdk.parent.span_id == llm.context.span_id  # type: ignore[union-attr]
    assert (sdk.attributes or {})[sc.PLYRA_SPAN_KIND] == "UNKNOWN"
    assert (sdk.attributes or {})[_auto.USAGE_COUNTED_ON] == "parent"


def test_anthropic_own_span_becomes_an_llm_span_without_the_instrumentor(
    exporter: InMemorySpanExporter,
) -> None:
    client = _anthropic(_json(_MESSAGE))

    @plyra_trace.tool
    def lookup() -> None:
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )

    with plyra_trace.session("s-2"):
        lookup()
    spans = _by_name(exporter)
    sdk = spans["anthropic.messages.create"]
    attributes = sdk.attributes or {}
    assert sdk.parent.span_id == spans["lookup"].context.span_id  # type: ignore[union-attr]
    assert attributes[sc.PLYRA_SPAN_KIND] == "LLM"
    assert attributes[sc.LLM_MODEL_NAME] == "claude-sonnet-4-5"
    assert attributes[sc.LLM_PROVIDER] == "anthropic"
    assert attributes[sc.LLM_TOKENS_PROMPT] == 80
    assert attributes[sc.LLM_TOKENS_COMPLETION] == 10
    assert attributes[sc.LLM_TOKENS_CACHE_READ] == 30
    assert attributes[sc.LLM_COST_TOTAL] == pytest.approx(
        _expected_cost(80, 10, 30, "claude-sonnet-4-5", "anthropic")
    )
    assert attributes[sc.SESSION_ID] == "s-2"


def test_anthropic_streaming_counts_tokens_once(exporter: InMemorySpanExporter) -> None:
    plyra_trace.instrument("anthropic")
    start = {**_MESSAGE, "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": 12, "output_tokens": 1}
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "ok"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 6},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    client = _anthropic(_sse(events))
    stream = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=10,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
    )
    text = "".join(
        e.delta.text
        for e in stream
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == "ok"
    counted = _with_tokens(exporter)
    assert len(counted) == 1
    attributes = counted[0].attributes or {}
    assert attributes[sc.LLM_TOKENS_PROMPT] == 12
    assert attributes[sc.LLM_TOKENS_COMPLETION] == 6
    assert sc.LLM_COST_TOTAL in attributes


def test_anthropic_error_passes_through(exporter: InMemorySpanExporter) -> None:
    plyra_trace.instrument("anthropic")
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    client = _anthropic(_json(error, status=529))
    with pytest.raises(anthropic.APIStatusError):
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    spans = _by_name(exporter)
    assert spans["messages.create"].status.status_code is StatusCode.ERROR
    assert _with_tokens(exporter) == []


# --- LangGraph ---------------------------------------------------------------------------


class _State(TypedDict):
    text: str


def test_langgraph_agent_nodes_and_handoffs(exporter: InMemorySpanExporter) -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, StateGraph

    plyra_trace.instrument("langgraph", "openai")
    usage: Any = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    model = GenericFakeChatModel(messages=iter([AIMessage(content="notes", usage_metadata=usage)]))
    body = json.loads(json.dumps(_CHAT))
    body["choices"][0]["message"]["content"] = "post"
    client = _openai(_json(body))

    def researcher(state: _State) -> _State:
        return {"text": str(model.invoke(state["text"]).content)}

    def writer(state: _State) -> _State:  # calls the provider SDK directly
        response = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": state["text"]}]
        )
        return {"text": response.choices[0].message.content or ""}

    def shout(state: _State) -> _State:
        return {"text": state["text"].upper()}

    graph = StateGraph(_State)
    graph.add_node("researcher", researcher)
    graph.add_node("writer", writer)
    graph.add_node("shout", shout)
    graph.add_edge(START, "researcher")
    graph.add_edge("researcher", "writer")
    graph.add_edge("writer", "shout")
    graph.add_edge("shout", END)
    app = graph.compile()

    @plyra_trace.agent
    def editor() -> Any:
        return app.invoke({"text": "topic"})

    with plyra_trace.session("s-3"):
        assert editor() == {"text": "POST"}

    spans = _by_name(exporter)
    researcher_span, writer_span = spans["researcher"], spans["writer"]
    r, w = researcher_span.attributes or {}, writer_span.attributes or {}
    assert r[sc.PLYRA_SPAN_KIND] == w[sc.PLYRA_SPAN_KIND] == "AGENT"
    assert (r[sc.AGENT_NAME], w[sc.AGENT_NAME]) == ("researcher", "writer")
    assert (r[sc.HANDOFF_FROM], r[sc.HANDOFF_TO]) == ("editor", "researcher")
    assert (w[sc.HANDOFF_FROM], w[sc.HANDOFF_TO]) == ("researcher", "writer")
    assert w[sc.HANDOFF_PROTOCOL] == sc.IN_PROCESS
    assert w[sc.SESSION_ID] == "s-3"
    shout_span = spans["shout"].attributes or {}
    assert shout_span[sc.PLYRA_SPAN_KIND] == "CHAIN"
    assert sc.HANDOFF_FROM not in shout_span
    graph_span = spans["LangGraph"]
    assert graph_span.parent.span_id == spans["editor"].context.span_id  # type: ignore[union-attr]
    llm_spans = [
        s
        for s in exporter.get_finished_spans()
        if (s.attributes or {}).get(sc.PLYRA_SPAN_KIND) == "LLM"
    ]
    parents = {s.name: s.parent.span_id for s in llm_spans}  # type: ignore[union-attr]
    assert parents == {
        "GenericFakeChatModel": researcher_span.context.span_id,
        "ChatCompletion": writer_span.context.span_id,  # nested in the node that made the call
    }
    assert sc.LLM_COST_TOTAL in (spans["ChatCompletion"].attributes or {})


# --- registry ---------------------------------------------------------------------------


def test_missing_library_is_a_hint_not_a_crash(
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if _instrument._importable("crewai"):  # it is absent from the dev environment
        target = dataclasses.replace(_instrument._TARGETS["crewai"], library="crewai_absent")
        monkeypatch.setitem(_instrument._TARGETS, "crewai", target)
    with caplog.at_level(logging.WARNING, logger="plyra_trace"):
        assert "crewai" not in plyra_trace.instrument("crewai")
    hints = [r.getMessage() for r in caplog.records if "crewai" in r.getMessage()]
    assert len(hints) == 1
    assert "not installed" in hints[0]


def test_unknown_target_is_rejected() -> None:
    with pytest.raises(ValueError, match="openai"):
        plyra_trace.instrument("opena1")


def test_init_instrument_true_turns_on_everything_installed() -> None:
    memory = InMemorySpanExporter()
    handle = plyra_trace.init("p", exporter=memory, batch=False, console=False, instrument=True)
    try:
        assert {"openai", "anthropic", "langchain"} <= set(_instrument.instrumented())
        assert ("crewai" in _instrument.instrumented()) == _instrument._importable("crewai")
        _openai(_json(_CHAT)).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
        assert [s.name for s in memory.get_finished_spans()] == ["ChatCompletion"]
    finally:
        handle.shutdown()


def test_init_with_names_and_aliases() -> None:
    memory = InMemorySpanExporter()
    handle = plyra_trace.init(
        "p", exporter=memory, batch=False, console=False, instrument=["langgraph", "openai"]
    )
    try:
        assert _instrument.instrumented() == ["langchain", "openai"]
    finally:
        handle.shutdown()


def test_langchain_model_over_instrumented_openai_counts_tokens_once(
    exporter: InMemorySpanExporter,
) -> None:
    """LangChain's chat-model span and the OpenAI span beneath it measure the same call."""
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    plyra_trace.instrument("langchain", "openai")
    client = _openai(_json(_CHAT))

    class _OpenAIChat(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "openai-chat"

        def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
            response = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
            usage: Any = {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}
            message = AIMessage(content="hi", usage_metadata=usage)
            assert response.usage is not None
            return ChatResult(generations=[ChatGeneration(message=message)])

    assert _OpenAIChat().invoke("hello").content == "hi"
    spans = _by_name(exporter)
    counted = _with_tokens(exporter)
    assert [s.name for s in counted] == ["ChatCompletion"]
    outer = spans["_OpenAIChat"]
    assert counted[0].parent.span_id == outer.context.span_id  # type: ignore[union-attr]
    assert (outer.attributes or {})[sc.PLYRA_SPAN_KIND] == "LLM"
    assert (outer.attributes or {})[_auto.USAGE_COUNTED_ON] == "child"


def test_langgraph_node_returning_to_itself_records_no_self_handoff(
    exporter: InMemorySpanExporter,
) -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, StateGraph

    plyra_trace.instrument("langchain")
    model = GenericFakeChatModel(messages=iter([AIMessage(content="a"), AIMessage(content="b")]))

    def thinker(state: _State) -> _State:
        return {"text": state["text"] + str(model.invoke(state["text"]).content)}

    def tools(state: _State) -> _State:
        return {"text": state["text"] + "!"}

    graph = StateGraph(_State)
    graph.add_node("thinker", thinker)
    graph.add_node("tools", tools)
    graph.add_edge(START, "thinker")
    graph.add_conditional_edges("thinker", lambda s: END if len(s["text"]) > 3 else "tools")
    graph.add_edge("tools", "thinker")
    assert graph.compile().invoke({"text": "x"}) == {"text": "xa!b"}

    runs = [s for s in exporter.get_finished_spans() if s.name == "thinker"]
    assert len(runs) == 2
    for run in runs:
        attributes = run.attributes or {}
        assert attributes[sc.PLYRA_SPAN_KIND] == "AGENT"
        assert sc.HANDOFF_FROM not in attributes  # thinker -> tools -> thinker is no handoff
    assert (_by_name(exporter)["tools"].attributes or {})[sc.PLYRA_SPAN_KIND] == "CHAIN"


def test_a_failing_enrichment_never_reaches_the_caller(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def _broken(attributes: Any) -> dict[str, Any]:
        raise RuntimeError("enrichment bug")

    monkeypatch.setattr(_auto, "_llm_enrichment", _broken)
    plyra_trace.instrument("openai")
    response = _openai(_json(_CHAT)).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    assert response.choices[0].message.content == "hi"
    span = _by_name(exporter)["ChatCompletion"]  # exported as the instrumentor made it
    assert (span.attributes or {})[sc.LLM_TOKENS_PROMPT] == 100
    assert sc.LLM_COST_TOTAL not in (span.attributes or {})


def test_capture_io_off_hides_prompts_and_completions() -> None:
    memory = InMemorySpanExporter()
    handle = plyra_trace.init(
        "p", exporter=memory, batch=False, console=False, capture_io=False, instrument=["openai"]
    )
    try:
        _openai(_json(_CHAT)).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "secret prompt"}]
        )
        (span,) = memory.get_finished_spans()
        attributes = span.attributes or {}
        assert "secret prompt" not in json.dumps(dict(attributes), default=str)
        assert attributes[sc.LLM_TOKENS_PROMPT] == 100  # usage and cost are not content
        assert sc.LLM_COST_TOTAL in attributes
    finally:
        handle.shutdown()


def test_instrumented_spans_reach_an_otlp_backend(receiver: Any) -> None:
    handle = plyra_trace.init("auto-e2e", endpoint=receiver.url, instrument=["anthropic"])
    try:
        client = _anthropic(_json(_MESSAGE))

        @plyra_trace.agent
        def writer() -> None:
            client.messages.create(
                model="claude-sonnet-4-5",
                max_tokens=10,
                messages=[{"role": "user", "content": "x"}],
            )

        with plyra_trace.session("s-e2e"):
            writer()
        handle.force_flush()
        spans = receiver.wait_for(lambda s: len(s) >= 3)
    finally:
        handle.shutdown()
    by_name = {s.name: s for s in spans}
    llm, agent = by_name["messages.create"], by_name["writer"]
    assert llm.parent_id == agent.span_id
    assert llm.attributes[sc.PLYRA_SPAN_KIND] == "LLM"
    assert llm.attributes[sc.LLM_TOKENS_TOTAL] == 90
    assert llm.attributes[sc.LLM_COST_TOTAL] > 0
    assert llm.attributes[sc.SESSION_ID] == "s-e2e"
    assert llm.resource["openinference.project.name"] == "auto-e2e"
    with_tokens = [
        s
        for s in spans
        if any(k.startswith(("llm.token_count", "gen_ai.usage")) for k in s.attributes)
    ]
    assert len(with_tokens) == 1


async def test_anthropic_async_tool_use(exporter: InMemorySpanExporter) -> None:
    plyra_trace.instrument("anthropic")
    body = {
        **_MESSAGE,
        "content": [
            {"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {"city": "Oslo"}}
        ],
        "stop_reason": "tool_use",
    }
    client = anthropic.AsyncAnthropic(
        api_key="k",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(_json(body))),
    )

    @plyra_trace.agent
    async def planner() -> Any:
        return await client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=10,
            messages=[{"role": "user", "content": "weather?"}],
            tools=[
                {
                    "name": "get_weather",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ],
        )

    response = await planner()
    assert response.content[0].type == "tool_use"
    spans = _by_name(exporter)
    counted = _with_tokens(exporter)
    assert [s.name for s in counted] == ["messages.create"]
    attributes = counted[0].attributes or {}
    assert counted[0].parent.span_id == spans["planner"].context.span_id  # type: ignore[union-attr]
    prefix = "llm.output_messages.0.message.tool_calls.0.tool_call.function."
    assert attributes[prefix + "name"] == "get_weather"
    assert json.loads(str(attributes[prefix + "arguments"])) == {"city": "Oslo"}
    assert attributes[sc.LLM_TOKENS_TOTAL] == 90


def test_anthropic_own_streaming_span_is_priced(exporter: InMemorySpanExporter) -> None:
    """Without the instrumentor, anthropic's own span of a stream carries usage and cost."""
    start = {**_MESSAGE, "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": 12, "output_tokens": 1}
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 6},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    stream = _anthropic(_sse(events)).messages.create(
        model="claude-sonnet-4-5",
        max_tokens=10,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
    )
    assert [e.type for e in stream][-1] == "message_stop"
    (span,) = exporter.get_finished_spans()
    attributes = span.attributes or {}
    assert attributes[sc.PLYRA_SPAN_KIND] == "LLM"
    assert attributes[sc.LLM_TOKENS_PROMPT] == 12
    assert attributes[sc.LLM_TOKENS_COMPLETION] == 6
    assert sc.LLM_COST_TOTAL in attributes


def test_unfinished_spans_are_remembered_only_up_to_a_bound(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_auto, "_MAX_OPEN", 3)
    processor = _auto.AutoSpanProcessor()
    tracer = plyra_trace._runtime.tracer
    leaked = [
        tracer.start_span("never ended", attributes={sc.PLYRA_SPAN_KIND: "LLM"}) for _ in range(5)
    ]
    for span in leaked:
        processor.on_start(span, None)  # type: ignore[arg-type]
    assert len(processor._open) == 3
