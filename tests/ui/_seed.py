"""Real SDK exports that fill a collector for the UI tests: agents, tools, guards, LLM calls."""

from __future__ import annotations

from typing import Any

import plyra_trace
from plyra_trace import GuardResult

XSS = "<img src=x onerror=alert(1)>"


@plyra_trace.llm(model="gpt-4o", provider="openai")
def _priced_llm(prompt: str) -> dict[str, Any]:
    """An OpenAI-shaped reply with usage the collector can price."""
    return {
        "choices": [{"message": {"role": "assistant", "content": f"answer to {prompt}"}}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
    }


@plyra_trace.llm(model="acme-unknown-model-9", provider="acme")
def _unpriced_llm(prompt: str) -> dict[str, Any]:
    """Usage for a model no price list knows: shown as unpriced, never $0."""
    return {"usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}}


@plyra_trace.guard(name="input-safety", policy="content-safety")
def _check(text: str) -> GuardResult:
    """A guard that flags the word 'dangerous'."""
    triggered = "dangerous" in text
    return GuardResult(
        policy="content-safety",
        action="block" if triggered else "allow",
        triggered=triggered,
        confidence=0.93,
        details={"reason": "unsafe keyword" if triggered else "clean"},
    )


@plyra_trace.tool(name="web-search")
def _search(query: str) -> list[dict[str, str]]:
    """A tool returning a long-ish structured value."""
    return [{"title": f"Result {i}", "snippet": "lorem ipsum " * 20} for i in range(3)]


@plyra_trace.agent(name="researcher")
def _researcher(query: str) -> dict[str, Any]:
    """The downstream agent: searches then asks the priced and unpriced models."""
    docs = _search(query)
    _priced_llm(query)
    _unpriced_llm(query)
    return {"docs": len(docs)}


@plyra_trace.agent(name="planner")
def run_planner(query: str) -> dict[str, Any]:
    """The root agent: guards the input, then hands off to the researcher in process."""
    _check(query)
    return _researcher(query)


def run_xss() -> None:
    """A trace whose span name, attribute and input carry script payloads."""

    @plyra_trace.trace(name=XSS)
    def _hostile(payload: str) -> str:
        with plyra_trace.SpanBuilder(name="attr-carrier", attributes={"evil": XSS}):
            pass
        return payload

    _hostile(f"{XSS}<script>window.__pwned=1</script>")


@plyra_trace.tool(name="flaky-api")
def _flaky(order: str) -> str:
    """A tool that always fails."""
    raise ConnectionError(f"upstream refused {order}")


@plyra_trace.agent(name="fixer")
def run_failing(order: str) -> str:
    """An agent whose tool raises; the agent recovers, so only the tool span is an error."""
    try:
        return _flaky(order)
    except ConnectionError:
        return "fallback"


@plyra_trace.trace(name="chat-turn")
def run_chat_turn(text: str) -> str:
    """A plain traced call (no agent, no model): one turn of a shared chat session."""
    return text.upper()
