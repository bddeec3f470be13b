"""gateway: the FastAPI entry point; its orchestrator agent plans, guards input, and hands off."""

from __future__ import annotations

import os
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import plyra_trace
from examples.multi_service.broker import WRITE_ANSWER, make_app
from examples.multi_service.common import complete, init_tracing, text_of
from plyra_trace import GuardResult, PlyraMiddleware
from plyra_trace.integrations.celery import instrument
from plyra_trace.integrations.httpx import instrument_client

handle = init_tracing("gateway")
app = FastAPI(title="plyra demo gateway")
app.add_middleware(PlyraMiddleware, agent_name="gateway", excluded_urls=["/health"])
RESEARCHER_URL = os.environ.get("RESEARCHER_URL", "http://127.0.0.1:8102")
researcher = instrument_client(httpx.Client(base_url=RESEARCHER_URL, timeout=60))
queue = make_app("gateway")
instrument(queue, agent_name="gateway")


class Question(BaseModel):
    question: str
    session: str = "anonymous-session"
    user: str = "anonymous"


@plyra_trace.guard(name="input-policy", policy="prompt-injection", provider="plyra-guard")
def check_input(question: str) -> GuardResult:
    attack = "ignore previous instructions" in question.lower()
    return GuardResult(
        policy="prompt-injection",
        action="block" if attack else "allow",
        triggered=attack,
        confidence=0.93 if attack else 0.99,
        details={"matched": "ignore previous instructions"} if attack else {},
    )


@plyra_trace.llm(model="gpt-4o-mini", provider="openai")
def plan(question: str) -> dict[str, Any]:
    return complete("gpt-4o-mini", "Plan how to answer with research and writing.", question)


@plyra_trace.agent(name="gateway", framework="custom", pattern="Plan-and-Execute")
def orchestrate(question: str) -> dict[str, Any]:
    text_of(plan(question))
    decision = check_input(question)
    if decision.action == "block":
        return {"blocked": True, "policy": decision.policy}
    with plyra_trace.handoff(to="researcher", reason="needs sources"):
        response = researcher.post("/research", json={"question": question})
    response.raise_for_status()
    with plyra_trace.handoff(to="writer", reason="draft the answer"):
        job = queue.send_task(WRITE_ANSWER, args=[question, response.json()])
    return dict(job.get(timeout=60))


@app.post("/ask")
def ask(body: Question) -> dict[str, Any]:
    with plyra_trace.session(body.session), plyra_trace.user(body.user):
        if "crash" in body.question.lower():
            raise HTTPException(status_code=500, detail="simulated gateway failure")
        return orchestrate(body.question)


@app.get("/health")
def health() -> dict[str, bool]:
    return {"ok": True}
