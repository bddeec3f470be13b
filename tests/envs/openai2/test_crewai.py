"""CrewAI (pins openai<3 and mcp<2), in its own environment: agents and their task handoffs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import crewai
import pytest
from crewai.llms.base_llm import BaseLLM
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import plyra_trace
from plyra_trace import _semconv as sc


@pytest.fixture(autouse=True)
def _clean_instrumentation() -> Iterator[None]:
    yield
    plyra_trace.uninstrument()


def test_crewai_agents_and_the_handoff_between_tasks(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREWAI_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("CREWAI_TRACING_ENABLED", "false")
    assert "crewai" in plyra_trace.instrument("crewai")

    class _Fixed(BaseLLM):
        def call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
            return "Thought: done\nFinal Answer: 42"

    model = _Fixed(model="fixed")
    researcher = crewai.Agent(role="researcher", goal="find", backstory="-", llm=model)
    writer = crewai.Agent(role="writer", goal="write", backstory="-", llm=model)
    tasks = [
        crewai.Task(description="research", expected_output="facts", agent=researcher),
        crewai.Task(description="write", expected_output="text", agent=writer),
    ]

    @plyra_trace.agent
    def lead() -> Any:
        return crewai.Crew(agents=[researcher, writer], tasks=tasks).kickoff()

    assert "42" in str(lead())
    agents = {
        str((s.attributes or {}).get(sc.AGENT_NAME)): s.attributes or {}
        for s in exporter.get_finished_spans()
        if s.instrumentation_scope is not None
        and s.instrumentation_scope.name.endswith("crewai")
        and (s.attributes or {}).get(sc.PLYRA_SPAN_KIND) == "AGENT"
    }
    assert set(agents) == {"researcher", "writer"}
    assert (agents["researcher"][sc.HANDOFF_FROM], agents["researcher"][sc.HANDOFF_TO]) == (
        "lead",
        "researcher",
    )
    assert (agents["writer"][sc.HANDOFF_FROM], agents["writer"][sc.HANDOFF_TO]) == (
        "researcher",
        "writer",
    )
    assert agents["writer"][sc.HANDOFF_PROTOCOL] == sc.IN_PROCESS
