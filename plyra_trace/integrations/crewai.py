"""CrewAI: a task's agent span, as OpenInference's CrewAI instrumentor records it, becomes that
agent's AGENT span with the handoff from the agent that worked before it (or the enclosing one).

Loaded by ``AutoSpanProcessor`` when a span of that instrumentor ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.sdk.trace import ReadableSpan

from plyra_trace import _semconv as sc
from plyra_trace._auto import OpenSpan, agent_attributes, in_process_handoff, text

__all__ = ["agent_rule"]

_NODE_ID: Final = "graph.node.id"  # the agent's role
_NODE_PARENT_ID: Final = "graph.node.parent_id"  # the agent that worked before
_FRAMEWORK: Final = "crewai"


def agent_rule(
    span: ReadableSpan, attributes: Mapping[str, Any], kind: str, entry: OpenSpan | None
) -> dict[str, Any] | None:
    """The AGENT attributes of a CrewAI agent span (its role, the previous agent's handoff)."""
    if kind != sc.SpanKind.AGENT.value:
        return None
    name = text(attributes.get(_NODE_ID))
    if name is None:
        return None
    sender = text(attributes.get(_NODE_PARENT_ID))
    if sender is None and entry is not None:
        sender = entry.enclosing_agent
    return {**agent_attributes(name, _FRAMEWORK), **in_process_handoff(sender, name)}
