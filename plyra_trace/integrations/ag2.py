"""AG2 (AutoGen): an agent's reply span, as OpenInference's AG2 instrumentor records it, becomes
that agent's AGENT span with the handoff from the agent that sent it the message.

Importing this module (the package does) adds the rule to ``AutoSpanProcessor``.
"""

from __future__ import annotations

from typing import Any, Final

from plyra_trace import _auto
from plyra_trace import _semconv as sc

__all__ = ["agent_rule"]

_SENDER: Final = "ag2.sender.name"


def agent_rule(finished: _auto.Finished) -> dict[str, Any] | None:
    """The AGENT attributes of an AG2 agent span (its own name, the sender as the handoff)."""
    name = finished.text(sc.AGENT_NAME)
    if finished.kind != sc.SpanKind.AGENT.value or name is None:
        return None
    handoff = _auto.in_process_handoff(finished.text(_SENDER), name)
    return {**_auto.agent_attributes(name, "ag2"), **handoff}


_auto.add_agent_rule("openinference.instrumentation.ag2", agent_rule)
