"""writer: a Celery worker whose agent drafts the answer behind an output guard."""

from __future__ import annotations

import re
from typing import Any

import plyra_trace
from examples.multi_service.broker import WRITE_ANSWER, make_app
from examples.multi_service.common import complete, init_tracing, text_of
from plyra_trace import GuardResult
from plyra_trace.integrations.celery import instrument

app = make_app("writer")
handle = init_tracing("writer")
instrument(app, agent_name="writer")

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


@plyra_trace.llm(model="gpt-4o", provider="openai")
def draft(question: str, notes: str) -> dict[str, Any]:
    return complete("gpt-4o", "Write a concise, sourced answer.", f"{question}\n\nNotes: {notes}")


@plyra_trace.guard(name="output-policy", policy="pii-and-safety", provider="plyra-guard")
def check_output(text: str) -> GuardResult:
    if "forbidden" in text.lower():
        return GuardResult("pii-and-safety", "block", True, 0.97, {"reason": "unsafe topic"})
    if _EMAIL.search(text):
        return GuardResult("pii-and-safety", "redact", True, 0.88, {"reason": "email address"})
    return GuardResult("pii-and-safety", "allow", False, 0.99)


@app.task(name=WRITE_ANSWER)
def write_answer(question: str, research: dict[str, Any]) -> dict[str, Any]:
    return writer_agent(question, research)


@plyra_trace.agent(name="writer", pattern="Chain-of-Thought")
def writer_agent(question: str, research: dict[str, Any]) -> dict[str, Any]:
    notes = "; ".join(d["text"][:80] for d in research.get("documents", []) if d.get("ok"))
    text = text_of(draft(question, notes))
    email = _EMAIL.search(question)
    if email:
        text += f" Contact: {email.group(0)}"
    if "forbidden" in question.lower():
        text += " (covers a forbidden topic)"
    decision = check_output(text)
    if decision.action == "block":
        return {"answer": None, "blocked": True, "policy": decision.policy}
    if decision.action == "redact":
        text = _EMAIL.sub("[redacted email]", text)
    return {"answer": text, "blocked": False, "sources": len(research.get("documents", []))}
