"""Auto-instrumentation of agent frameworks that need no model: AG2 conversations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import plyra_trace
from plyra_trace import _semconv as sc

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def _clean_instrumentation() -> Iterator[None]:
    yield
    plyra_trace.uninstrument()


def _fixed(text: str) -> Callable[..., tuple[bool, str]]:
    def reply(recipient: Any, messages: Any = None, sender: Any = None, config: Any = None) -> Any:
        return True, text

    return reply


def test_ag2_replies_are_agent_spans_with_handoffs(exporter: InMemorySpanExporter) -> None:
    autogen = pytest.importorskip("autogen")
    assert "ag2" in plyra_trace.instrument("ag2")
    planner = autogen.ConversableAgent("planner", llm_config=False, human_input_mode="NEVER")
    coder = autogen.ConversableAgent("coder", llm_config=False, human_input_mode="NEVER")
    planner.register_reply([autogen.ConversableAgent, None], _fixed("plan"))
    coder.register_reply([autogen.ConversableAgent, None], _fixed("code"))

    @plyra_trace.agent
    def lead() -> None:
        planner.initiate_chat(coder, message="start", max_turns=2, silent=True)

    with plyra_trace.session("s-ag2"):
        lead()

    spans = exporter.get_finished_spans()
    chat = next(s for s in spans if s.name == "planner.initiate_chat")
    lead_span = next(s for s in spans if s.name == "lead")
    assert chat.parent is not None and chat.parent.span_id == lead_span.context.span_id
    replies = [s for s in spans if s.name.endswith(".generate_reply")]
    edges = [
        ((s.attributes or {})[sc.HANDOFF_FROM], (s.attributes or {})[sc.HANDOFF_TO])
        for s in replies
    ]
    assert edges == [("planner", "coder"), ("coder", "planner"), ("planner", "coder")]
    for span in replies:
        attributes = span.attributes or {}
        assert attributes[sc.PLYRA_SPAN_KIND] == "AGENT"
        assert attributes[sc.HANDOFF_PROTOCOL] == sc.IN_PROCESS
        assert attributes[sc.AGENT_FRAMEWORK] == "ag2"
        assert attributes[sc.SESSION_ID] == "s-ag2"
        assert span.parent is not None and span.parent.span_id == chat.context.span_id
