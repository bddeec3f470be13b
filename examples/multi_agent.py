"""Multi-agent orchestration: an orchestrator hands work to a researcher and an analyst.

The researcher runs "in another process": the orchestrator injects trace context into headers,
the researcher extracts it and continues the trace, so both sides land in one trace with the
handoff (who, to whom, why, over what) recorded. Model calls go to a deterministic fake LLM that
reports token usage under a real model name, so cost is priced.

Run: python examples/multi_agent.py            (console tree)
     python examples/multi_agent.py --endpoint http://127.0.0.1:4318
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import plyra_trace
from plyra_trace import GuardResult


def fake_completion(model: str, prompt: str) -> dict[str, Any]:
    """An OpenAI-shaped response with realistic token usage (no network, no API key)."""
    time.sleep(random.uniform(0.005, 0.02))
    prompt_tokens = 40 + len(prompt.split()) * 3
    text = f"[{model}] considered: {prompt[:60]}"
    return {
        "model": model,
        "choices": [{"message": {"role": "assistant", "content": text}}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": 25 + len(text.split()),
            "prompt_tokens_details": {"cached_tokens": prompt_tokens // 4},
        },
    }


@plyra_trace.llm(model="gpt-4o-mini", provider="openai")
def think(prompt: str) -> dict[str, Any]:
    return fake_completion("gpt-4o-mini", prompt)


@plyra_trace.tool(name="web-search", description="Search the web for documents")
def web_search(query: str) -> list[dict[str, str]]:
    return [{"title": f"{query} — result {i}", "url": f"https://example.com/{i}"} for i in range(3)]


@plyra_trace.guard(name="output-check", policy="no-speculation")
def check_output(text: str) -> GuardResult:
    flagged = "guaranteed" in text.lower()
    return GuardResult(
        policy="no-speculation",
        action="flag" if flagged else "allow",
        triggered=flagged,
        confidence=0.8,
    )


@plyra_trace.agent(name="researcher", pattern="ReAct")
def research_agent(query: str) -> dict[str, Any]:
    think(f"plan a search for {query}")
    docs = web_search(query)
    return {"query": query, "docs": docs}


@plyra_trace.agent(name="analyst", pattern="Chain-of-Thought")
def analysis_agent(research: dict[str, Any]) -> str:
    answer = think(f"summarise {len(research['docs'])} documents about {research['query']}")
    text = answer["choices"][0]["message"]["content"]
    check_output(text)
    return text


def researcher_service(headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """What another service would do with an incoming request: continue the caller's trace."""
    ctx = plyra_trace.extract_context(headers)
    with plyra_trace.continue_trace(ctx):
        return research_agent(body["query"])


@plyra_trace.agent(name="orchestrator", framework="custom")
def orchestrator(query: str) -> str:
    headers: dict[str, str] = {}
    plyra_trace.inject_context(headers, agent_name="orchestrator", handoff_reason="needs research")
    research = researcher_service(headers, {"query": query})  # stands in for an HTTP call
    return analysis_agent(research)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", help="OTLP endpoint, e.g. http://127.0.0.1:4318")
    parser.add_argument("--queries", type=int, default=2)
    args = parser.parse_args()

    pt = plyra_trace.init(project="multi-agent-demo", endpoint=args.endpoint)
    queries = ["top EV companies", "solid-state battery suppliers", "charging networks"]
    with (
        plyra_trace.session("session-42"),
        plyra_trace.user("user-7"),
        plyra_trace.tags(["example"]),
        plyra_trace.metadata({"tier": "enterprise"}),
    ):
        for query in queries[: args.queries]:
            print(orchestrator(query))
    pt.shutdown()


if __name__ == "__main__":
    main()
