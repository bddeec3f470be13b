"""AG2 (AutoGen): an agent's reply span, as OpenInference's AG2 instrumentor records it, becomes
that agent's AGENT span with the handoff from the agent that sent it the message.

Loaded by ``AutoSpanProcessor`` when a span of that instrumentor ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.sdk.trace import ReadableSpan

from plyra_trace import _semconv as sc
from plyra_trace._auto import OpenSpan, agent_attributes, in_process_handoff, text

__all__ = ["agent_rule"]

_SENDER: Final = "ag2.sender.name"
_FRAMEWORK: Final = "ag2"


def agent_rule(
    span: ReadableSpan, attributes: Mapping[str, Any], kind: str, entry: OpenSpan | None
) -> dict[str, Any] | None:
    """The AGENT attributes of an AG2 agent span (its own name, the sender as the handoff)."""
    if kind != sc.SpanKind.AGENT.value:
        return None
    name = text(attributes.get(sc.AGENT_NAME))
    if name is None:
        return None
    return {
        **agent_attributes(name, _FRAMEWORK),
        **in_process_handoff(text(attributes.get(_SENDER)), name),
    }
