"""session/user/metadata/tags: stackable, isolated between threads and tasks, no leaks."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

import plyra_trace
from plyra_trace._context import current_scope


def test_context_managers_reach_every_span_and_stack(exporter):
    @plyra_trace.tool
    def work():
        return 1

    with plyra_trace.session("s1"), plyra_trace.user("u1"):
        with plyra_trace.metadata({"tier": "enterprise", "region": "eu"}):
            with plyra_trace.metadata({"region": "us"}), plyra_trace.tags(["prod"]):
                with plyra_trace.tags(["beta", "prod"]):
                    work()
    work()
    inside, outside = exporter.get_finished_spans()
    assert inside.attributes["session.id"] == "s1"
    assert inside.attributes["gen_ai.conversation.id"] == "s1"
    assert inside.attributes["user.id"] == "u1"
    assert json.loads(inside.attributes["metadata"]) == {"tier": "enterprise", "region": "us"}
    assert tuple(inside.attributes["tag.tags"]) == ("prod", "beta")
    for key in ("session.id", "user.id", "metadata", "tag.tags"):
        assert key not in outside.attributes


def test_nothing_leaks_after_an_exception():
    with pytest.raises(RuntimeError), plyra_trace.session("s"):
        raise RuntimeError
    assert current_scope().session_id is None


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError):
        plyra_trace.session(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plyra_trace.user("")
    with pytest.raises(TypeError):
        plyra_trace.metadata(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_threads_do_not_share_sessions(exporter):
    @plyra_trace.tool(capture_input=False, capture_output=False)
    def work(i):
        return i

    barrier = threading.Barrier(8)

    def run(i):
        with plyra_trace.session(f"s{i}"):
            barrier.wait()
            work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sessions = sorted(s.attributes["session.id"] for s in exporter.get_finished_spans())
    assert sessions == sorted(f"s{i}" for i in range(8))


async def test_thousand_concurrent_tasks_keep_their_own_sessions(exporter):
    @plyra_trace.agent(name="worker", capture_output=False)
    async def worker(i):
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return i

    async def one(i):
        with plyra_trace.session(f"session-{i}"), plyra_trace.user(f"user-{i}"):
            await worker(i)

    await asyncio.gather(*(one(i) for i in range(1000)))
    spans = exporter.get_finished_spans()
    assert len(spans) == 1000
    for span in spans:
        index = json.loads(span.attributes["input.value"])["i"]
        assert span.attributes["session.id"] == f"session-{index}"
        assert span.attributes["user.id"] == f"user-{index}"
