"""CrewAI: a task's agent span, as OpenInference's CrewAI instrumentor records it, becomes that
agent's AGENT span with the handoff from the agent that worked before it (or the enclosing one).

Importing this module (the package does) adds the rule to ``AutoSpanProcessor``.
"""

from __future__ import annotations

from typing import Any, Final

from plyra_trace import _auto
from plyra_trace._semconv import SpanKind

__all__ = ["agent_rule"]

_ROLE: Final = "graph.node.id"  # the agent's role
_PREVIOUS: Final = "graph.node.parent_id"  # the agent that worked before


def agent_rule(finished: _auto.Finished) -> dict[str, Any] | None:
    """The AGENT attributes of a CrewAI agent span (its role, the previous agent's handoff)."""
    role = finished.text(_ROLE)
    if finished.kind != SpanKind.AGENT.value or role is None:
        return None
    sender = finished.text(_PREVIOUS) or finished.entry.enclosing_agent
    return {**_auto.agent_attributes(role, "crewai"), **_auto.in_process_handoff(sender, role)}


_auto.add_agent_rule("openinference.instrumentation.crewai", agent_rule)
