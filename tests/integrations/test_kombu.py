"""Plain kombu producers and consumers over a real kombu Connection (memory transport): the
helpers carry trace, session, user and handoff, and hostile headers never raise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import plyra_trace
from plyra_trace.integrations.kombu import continue_from_message, inject_headers


@pytest.fixture
def connection() -> Iterator[Any]:
    from kombu import Connection

    with Connection("memory://") as conn:
        yield conn


def deliver(connection: Any, queue_name: str, headers: Any, handle: Any) -> list[Any]:
    """Publish one message with ``headers`` and consume it with ``handle(body, message)``."""
    from kombu import Queue

    queue = Queue(queue_name)
    connection.Producer().publish(
        {"n": 1}, routing_key=queue_name, declare=[queue], headers=headers, serializer="json"
    )
    results: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        results.append(handle(body, message))
        message.ack()

    with connection.Consumer(queue, callbacks=[on_message], accept=["json"]):
        connection.drain_events(timeout=5)
    return results


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    return next(s for s in exporter.get_finished_spans() if s.name == name)


def test_trace_session_user_and_handoff_cross_a_real_queue(exporter, connection):
    @plyra_trace.agent(name="editor")
    def send() -> dict[str, Any]:
        with (
            plyra_trace.session("s-3"),
            plyra_trace.user("u-3"),
            plyra_trace.handoff(to="writer", reason="draft the intro"),
        ):
            headers = {"x-app": "kept"}
            assert inject_headers(headers) is headers  # filled in place, and returned
            return headers

    headers = send()
    assert headers["x-app"] == "kept" and headers["traceparent"].startswith("00-")

    @plyra_trace.agent(name="writer")
    def write(body: dict[str, int]) -> int:
        @plyra_trace.tool(name="lookup")
        def lookup() -> int:
            return body["n"]

        return lookup()

    def handle(body: Any, message: Any) -> int:
        with continue_from_message(message):
            return write(body)

    assert deliver(connection, "drafts", headers, handle) == [1]
    editor, writer, tool = (
        named(exporter, "editor"),
        named(exporter, "writer"),
        named(exporter, "lookup"),
    )
    assert writer.context.trace_id == editor.context.trace_id
    assert writer.parent.span_id == editor.context.span_id
    assert writer.parent.is_remote and tool.parent.span_id == writer.context.span_id
    assert writer.attributes["agent.handoff.from"] == "editor"
    assert writer.attributes["agent.handoff.to"] == "writer"
    assert writer.attributes["agent.handoff.reason"] == "draft the intro"
    assert writer.attributes["agent.handoff.protocol"] == "queue"
    assert "agent.handoff.from" not in tool.attributes  # recorded once, on the first span
    for span in (writer, tool):
        assert span.attributes["session.id"] == "s-3" and span.attributes["user.id"] == "u-3"


def test_the_consumer_names_itself_when_the_sender_did_not_say_to_whom(exporter, connection):
    @plyra_trace.agent(name="editor")
    def send() -> dict[str, Any]:
        return dict(inject_headers({}))

    def handle(body: Any, message: Any) -> None:
        with continue_from_message(message, agent_name="archiver"):
            with trace.get_tracer("consumer").start_as_current_span("archive"):  # any span
                pass

    deliver(connection, "archive", send(), handle)
    archive = named(exporter, "archive")
    assert archive.context.trace_id == named(exporter, "editor").context.trace_id
    assert archive.attributes["agent.handoff.from"] == "editor"
    assert archive.attributes["agent.handoff.to"] == "archiver"


class _Exploding:
    """A message whose headers cannot even be read."""

    @property
    def headers(self) -> Any:
        raise RuntimeError("broken message")


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "00-zzzz-not-hex-01", "baggage": "%%%;;=="},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},  # all-zero ids are invalid
        {"traceparent": 42, "tracestate": ["a"], "baggage": {"k": "v"}},
        {"traceparent": b"\xff\xfe", "baggage": "k=" + "v" * 20_000},
        {},
        None,
    ],
    ids=["garbage", "zero-ids", "wrong-types", "bytes-and-oversized", "empty", "none"],
)
def test_hostile_headers_start_a_fresh_trace_and_never_raise(exporter, connection, headers):
    @plyra_trace.agent(name="writer")
    def write(body: dict[str, int]) -> int:
        return body["n"]

    def handle(body: Any, message: Any) -> int:
        with continue_from_message(message, agent_name="writer"):
            return write(body)

    assert deliver(connection, "hostile", headers, handle) == [1]
    writer = named(exporter, "writer")
    assert writer.parent is None  # a new root
    assert not any(key.startswith("agent.handoff.") for key in writer.attributes)


def test_messages_that_are_not_kombu_messages_never_raise(exporter):
    @plyra_trace.agent(name="writer")
    def write() -> str:
        return "ok"

    for message in (object(), None, _Exploding(), {"headers": "not a message"}):
        with continue_from_message(message):
            assert write() == "ok"
    assert all(s.parent is None for s in exporter.get_finished_spans())


def test_inject_headers_without_a_trace_writes_no_context(exporter):
    headers = inject_headers({"x-app": "kept"})
    assert headers == {"x-app": "kept"}  # nothing to continue, nothing written
