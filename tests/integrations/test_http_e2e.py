"""Across processes: an agent calls a FastAPI service (uvicorn) that calls a Flask service, and the
three processes' spans form one trace with a handoff at each hop."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

import plyra_trace
from plyra_trace.integrations.httpx import PlyraTransport
from tests.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.processes import ROOT, python_service

pytestmark = pytest.mark.timeout(90)

SERVER, CLIENT = 2, 3  # OTLP span kinds


@contextmanager
def _service(*args: str) -> Iterator[str]:
    """Run ``http_e2e_services`` with ``args``; yields its base URL, flushes it on exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with python_service("tests.integrations.http_e2e_services", *args, env=env) as port:
        yield f"http://127.0.0.1:{port}"


def test_one_trace_across_three_processes(receiver: OTLPReceiver) -> None:
    with (
        _service("flask", receiver.url) as writer_url,
        _service("fastapi", receiver.url, writer_url) as researcher_url,
    ):
        handle = plyra_trace.init(project="e2e", service_name="planner-app", endpoint=receiver.url)
        try:
            client = httpx.Client(transport=PlyraTransport(), base_url=researcher_url)

            @plyra_trace.agent(name="planner")
            def plan(topic: str) -> str:
                with plyra_trace.handoff(to="researcher", reason="needs research"):
                    return str(client.get(f"/research/{topic}").json()["article"])

            with plyra_trace.session("conv-7"), plyra_trace.user("grace"):
                assert plan("otters") == "an article about otters"
        finally:
            handle.shutdown()

    def complete(spans: list[ReceivedSpan]) -> bool:
        names = {s.name for s in spans}
        return {"planner", "researcher", "writer", "GET /write/<topic>"} <= names

    spans = receiver.wait_for(complete, timeout=30)
    assert len({s.trace_id for s in spans}) == 1
    by_id = {s.span_id: s for s in spans}

    def ancestors(span: ReceivedSpan) -> list[str]:
        chain = []
        while span.parent_id is not None:
            span = by_id[span.parent_id]
            chain.append(f"{span.service}:{span.name}")
        return chain

    (writer,) = [s for s in spans if s.name == "writer"]
    chain = ancestors(writer)
    assert chain[0] == "writer-svc:GET /write/<topic>"
    assert chain[1] == "researcher-svc:GET"
    assert chain[2] == "researcher-svc:researcher"
    assert "researcher-svc:GET /research/{topic}" in chain
    assert chain[-2:] == ["planner-app:GET", "planner-app:planner"]
    servers = {s.name: s for s in spans if s.kind == SERVER}
    assert set(servers) == {"GET /research/{topic}", "GET /write/<topic>"}
    first = servers["GET /research/{topic}"].attributes
    assert (first["agent.handoff.from"], first["agent.handoff.to"]) == ("planner", "researcher")
    assert (first["agent.handoff.reason"], first["agent.handoff.protocol"]) == (
        "needs research",
        "http",
    )
    second = servers["GET /write/<topic>"].attributes
    assert (second["agent.handoff.from"], second["agent.handoff.to"]) == ("researcher", "writer")
    assert second["agent.handoff.reason"] == "write it up"
    assert len([s for s in spans if s.kind == CLIENT]) == 2
    for span in spans:
        assert span.attributes.get("session.id") == "conv-7", span.name
        assert span.attributes.get("user.id") == "grace", span.name
