"""researcher: a Flask service whose agent plans searches and calls tools over MCP."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from flask import Flask, jsonify, request
from mcp import Client

import plyra_trace
from examples.multi_service.common import complete, init_tracing, text_of
from plyra_trace.integrations.flask import instrument_app
from plyra_trace.integrations.mcp import instrument_client

handle = init_tracing("researcher")
app = Flask(__name__)
instrument_app(app, agent_name="researcher")
TOOLS_URL = os.environ.get("TOOLS_URL", "http://127.0.0.1:8103/mcp")


@plyra_trace.llm(model="claude-haiku-4-5", provider="anthropic")
def plan_queries(question: str) -> dict[str, Any]:
    return complete("claude-haiku-4-5", "Turn the question into web searches.", question)


async def _use_tools(query: str) -> list[dict[str, Any]]:
    async with Client(TOOLS_URL) as client:
        instrument_client(client)
        with plyra_trace.handoff(to="tools", reason="search the web"):
            found = await client.call_tool("search", {"query": query, "limit": 3})
        hits = found.structured_content or {}
        results = hits.get("result", []) if isinstance(hits, dict) else []
        documents = []
        for hit in results[:2]:
            with plyra_trace.handoff(to="tools", reason="read a source"):
                page = await client.call_tool("fetch", {"url": hit["url"]})
            text = " ".join(getattr(c, "text", "") for c in page.content)
            documents.append({"url": hit["url"], "ok": not page.is_error, "text": text})
        return documents


@plyra_trace.agent(name="researcher", pattern="ReAct")
def research(question: str) -> dict[str, Any]:
    plan = text_of(plan_queries(question))
    documents = asyncio.run(_use_tools(question))
    return {"question": question, "plan": plan, "documents": documents}


@app.post("/research")
def research_endpoint() -> Any:
    body = request.get_json(force=True)
    return jsonify(research(str(body["question"])))


@app.get("/health")
def health() -> Any:
    return {"ok": True}


if __name__ == "__main__":
    from werkzeug.serving import run_simple

    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8102"))
    run_simple(host, port, app, threaded=True)
