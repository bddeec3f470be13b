"""Celery fine points with a real in-process worker on the memory transport: retries, chains,
groups, chords, revokes, eager mode, protocol 1, failed publishes and hostile headers."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import plyra_trace
from plyra_trace._safety import reset_log_once
from plyra_trace.integrations import celery as celery_integration

FAST = {"polling_interval": 0.01}  # the memory transport polls once a second by default


def wait_for(
    exporter: InMemorySpanExporter,
    predicate: Callable[[ReadableSpan], bool],
    count: int = 1,
    timeout: float = 10.0,
) -> list[ReadableSpan]:
    """Finished spans matching ``predicate``, once there are ``count`` of them (run spans end on
    task_postrun, just after the result is stored)."""
    deadline = time.monotonic() + timeout
    found: list[ReadableSpan] = []
    while time.monotonic() < deadline:
        found = [s for s in exporter.get_finished_spans() if predicate(s)]
        if len(found) >= count:
            return sorted(found, key=lambda s: s.start_time or 0)
        time.sleep(0.01)
    raise AssertionError(f"{len(found)} of {count} spans arrived: {[s.name for s in found]}")


def in_trace(trace_id: int) -> Callable[[ReadableSpan], bool]:
    return lambda span: span.context.trace_id == trace_id


def by_message_id(spans: list[ReadableSpan], name_prefix: str) -> dict[str, ReadableSpan]:
    return {
        str(s.attributes["messaging.message.id"]): s
        for s in spans
        if s.name.startswith(name_prefix)
    }


@pytest.fixture(scope="module")
def app() -> Iterator[Any]:
    """One app and one solo worker for the module: starting and stopping a worker takes seconds."""
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    app = Celery("worker_tests", broker="memory://", backend="cache+memory://")
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_transport_options=FAST,
    )

    @app.task(name="w.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="w.total", shared=False)
    def total(values: list[int]) -> int:
        return sum(values)

    @app.task(name="w.flaky", bind=True, shared=False, max_retries=3)
    def flaky(self: Any, x: int) -> int:
        if self.request.retries < 1:
            raise self.retry(countdown=0, exc=ConnectionError("upstream not ready"))
        return x * 10

    @app.task(name="w.hopeless", bind=True, shared=False, max_retries=1)
    def hopeless(self: Any) -> None:
        raise self.retry(countdown=0, exc=ConnectionError("still down"))

    celery_integration.instrument(app, agent_name="writer")
    with start_worker(app, pool="solo", perform_ping_check=False):
        yield app
    celery_integration.uninstrument()


def get(result: Any) -> Any:
    return result.get(timeout=10, interval=0.01)


def test_a_retry_is_a_second_run_span_in_the_same_trace(exporter, app):
    @plyra_trace.agent(name="planner")
    def planner() -> int:
        with plyra_trace.handoff(to="writer", reason="scale it"):
            return int(get(app.tasks["w.flaky"].delay(4)))

    assert planner() == 40
    agent = wait_for(exporter, lambda s: s.name == "planner")[0]
    spans = wait_for(exporter, in_trace(agent.context.trace_id), count=5)
    runs = [s for s in spans if s.name == "run w.flaky"]
    publishes = [s for s in spans if s.name == "publish w.flaky"]
    assert len(runs) == 2 and len(publishes) == 2
    first, second = runs
    # the first attempt: child of the producer's publish; RETRY is not the outcome, so no error
    assert publishes[0].parent.span_id == agent.context.span_id
    assert first.parent.span_id == publishes[0].context.span_id
    assert first.attributes["celery.state"] == "RETRY"
    assert first.attributes["celery.retries"] == 0
    assert first.status.status_code is StatusCode.UNSET
    retry_event = next(e for e in first.events if e.name == "celery.retry")
    assert "upstream not ready" in retry_event.attributes["reason"]
    # the worker re-publishes the same task id from inside the first attempt
    assert publishes[1].parent.span_id == first.context.span_id
    assert (
        publishes[1].attributes["messaging.message.id"] == first.attributes["messaging.message.id"]
    )
    assert publishes[1].attributes["celery.retries"] == 1
    assert second.parent.span_id == publishes[1].context.span_id
    assert second.attributes["celery.retries"] == 1
    assert second.attributes["celery.state"] == "SUCCESS"
    assert second.attributes["output.value"] == "40"
    # both attempts carry the planner's handoff, not a hop from the writer to itself
    for run in runs:
        assert run.attributes["agent.handoff.from"] == "planner"
        assert run.attributes["agent.handoff.to"] == "writer"
        assert run.attributes["agent.handoff.reason"] == "scale it"


def test_retries_exhausted_fail_the_last_attempt_only(exporter, app):
    with pytest.raises(ConnectionError, match="still down"):
        get(app.tasks["w.hopeless"].delay())
    runs = wait_for(exporter, lambda s: s.name == "run w.hopeless", count=2)
    assert len({s.context.trace_id for s in runs}) == 1
    assert [s.attributes["celery.retries"] for s in runs] == [0, 1]
    assert runs[0].status.status_code is StatusCode.UNSET
    assert runs[1].status.status_code is StatusCode.ERROR
    assert runs[1].status.description == "ConnectionError: still down"
    assert runs[1].attributes["celery.state"] == "FAILURE"


def test_chain_follow_ups_are_published_by_the_previous_run(exporter, app):
    from celery import chain

    add = app.tasks["w.add"]

    @plyra_trace.agent(name="planner")
    def planner() -> int:
        return int(get(chain(add.s(1, 2), add.s(3), add.s(4)).delay()))

    assert planner() == 10
    agent = wait_for(exporter, lambda s: s.name == "planner")[0]
    spans = wait_for(exporter, in_trace(agent.context.trace_id), count=7)
    runs = [s for s in spans if s.name == "run w.add"]
    publishes = by_message_id(spans, "publish ")
    assert len(runs) == 3 and len(publishes) == 3
    parent_of_publish = agent
    for run in runs:  # in execution order
        publish = publishes[str(run.attributes["messaging.message.id"])]
        assert publish.kind is SpanKind.PRODUCER and run.kind is SpanKind.CONSUMER
        assert publish.parent.span_id == parent_of_publish.context.span_id
        assert run.parent.span_id == publish.context.span_id
        parent_of_publish = run
    assert [r.attributes["output.value"] for r in runs] == ["3", "6", "10"]


def test_group_members_are_children_of_their_own_publish(exporter, app):
    from celery import group

    add = app.tasks["w.add"]

    @plyra_trace.agent(name="planner")
    def planner() -> list[int]:
        return list(get(group(add.s(i, i) for i in range(3)).delay()))

    assert planner() == [0, 2, 4]
    agent = wait_for(exporter, lambda s: s.name == "planner")[0]
    spans = wait_for(exporter, in_trace(agent.context.trace_id), count=7)
    publishes, runs = by_message_id(spans, "publish "), by_message_id(spans, "run ")
    assert len(publishes) == 3 and publishes.keys() == runs.keys()
    for task_id, run in runs.items():
        assert publishes[task_id].parent.span_id == agent.context.span_id
        assert run.parent.span_id == publishes[task_id].context.span_id


def test_chord_callback_is_published_by_the_last_header_run(exporter, app):
    from celery import chord

    add, total = app.tasks["w.add"], app.tasks["w.total"]

    @plyra_trace.agent(name="planner")
    def planner() -> int:
        return int(get(chord([add.s(i, i) for i in range(3)], total.s()).delay()))

    assert planner() == 6
    agent = wait_for(exporter, lambda s: s.name == "planner")[0]
    spans = wait_for(exporter, in_trace(agent.context.trace_id), count=9)
    publishes, runs = by_message_id(spans, "publish "), by_message_id(spans, "run ")
    assert len(publishes) == 4 and publishes.keys() == runs.keys()
    header = {i: r for i, r in runs.items() if r.name == "run w.add"}
    callback_id = next(i for i, r in runs.items() if r.name == "run w.total")
    for task_id in header:
        assert publishes[task_id].parent.span_id == agent.context.span_id
        assert runs[task_id].parent.span_id == publishes[task_id].context.span_id
    callback_publish = publishes[callback_id]
    assert callback_publish.parent.span_id in {r.context.span_id for r in header.values()}
    assert runs[callback_id].parent.span_id == callback_publish.context.span_id
    assert runs[callback_id].attributes["output.value"] == "6"


def test_an_expired_task_is_a_revoked_run_span(exporter, app):
    from celery.exceptions import TaskRevokedError

    past = datetime.now(UTC) - timedelta(minutes=1)
    result = app.tasks["w.add"].apply_async((1, 1), expires=past)
    with pytest.raises(TaskRevokedError):
        get(result)
    run = wait_for(
        exporter,
        lambda s: s.name == "run w.add" and s.attributes.get("messaging.message.id") == result.id,
    )[0]
    publish = wait_for(
        exporter,
        lambda s: (
            s.name == "publish w.add" and s.attributes.get("messaging.message.id") == result.id
        ),
    )[0]
    assert run.parent.span_id == publish.context.span_id
    assert run.context.trace_id == publish.context.trace_id
    assert run.attributes["celery.state"] == "REVOKED"
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description == "revoked: expired before it ran"


def test_each_publish_carries_the_baggage_of_its_own_context(exporter, app):
    """Baggage headers are reused while the context stays the same, and only then."""
    add = app.tasks["w.add"]
    sent: dict[str, str] = {}
    for session in ("s-a", "s-b"):
        with plyra_trace.session(session):
            for _ in range(2):  # the second publish from this context reuses the first's baggage
                sent[add.delay(1, 1).id] = session
    sent[add.delay(1, 1).id] = ""  # no session any more
    runs = wait_for(
        exporter,
        lambda s: s.name == "run w.add" and s.attributes.get("messaging.message.id") in sent,
        count=5,
    )
    for run in runs:
        assert (
            run.attributes.get("session.id", "")
            == sent[str(run.attributes["messaging.message.id"])]
        )


def test_a_failed_publish_raises_as_before_and_its_span_still_ends(exporter, app):
    from kombu.exceptions import EncodeError

    add = app.tasks["w.add"]
    with pytest.raises(EncodeError):
        add.delay(object(), 1)  # not JSON: the broker client raises after before_task_publish
    assert not [s for s in exporter.get_finished_spans() if s.name == "publish w.add"]
    assert get(add.delay(2, 2)) == 4  # the next publish from this thread ends the failed one
    publishes = wait_for(exporter, lambda s: s.name == "publish w.add", count=2)
    failed = [s for s in publishes if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1
    assert failed[0].status.description == "publish failed: the message was not sent"


def test_hostile_headers_on_a_message_never_fail_the_task(exporter, app):
    """Messages from elsewhere (not traced by us): garbage context is ignored, the task runs."""
    hostile: list[dict[str, Any]] = [
        {"traceparent": "00-zzzz-not-a-trace-01", "baggage": "%%%;;=="},
        {"traceparent": 12345, "tracestate": ["a", "b"], "baggage": {"x": 1}, "plyra_sent_at": "x"},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "baggage": "k=" + "v" * 20000},
        {"plyra_sent_at": True, "headers": "not a dict"},
    ]
    ids = []
    with app.producer_or_acquire() as producer:
        for number, extra in enumerate(hostile):
            task_id = str(uuid.uuid4())
            headers = {
                "lang": "py",
                "task": "w.add",
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "group": None,
                "retries": 0,
                "eta": None,
                "expires": None,
                "timelimit": [None, None],
                "argsrepr": repr((number, 1)),
                "kwargsrepr": "{}",
                **extra,
            }
            body = [[number, 1], {}, {"callbacks": None, "errbacks": None, "chain": None}]
            producer.publish(
                body, routing_key="celery", exchange="", serializer="json", headers=headers
            )
            ids.append(task_id)
    assert [get(app.AsyncResult(i)) for i in ids] == [1, 2, 3, 4]
    runs = wait_for(exporter, lambda s: s.name == "run w.add", count=4)
    assert {str(s.attributes["messaging.message.id"]) for s in runs} == set(ids)
    for run in runs:
        assert run.parent is None  # a new root: nothing valid to continue
        assert run.status.status_code is StatusCode.UNSET
        assert not any(k.startswith("agent.handoff.") for k in run.attributes)
        assert "messaging.celery.queue_wait_ms" not in run.attributes


def test_protocol_1_warns_once_and_its_tasks_still_run(exporter, app, caplog):
    from celery import Celery

    reset_log_once()
    old = Celery("protocol_1", broker="memory://", backend="cache+memory://")
    old.conf.update(task_protocol=1, task_serializer="json", broker_transport_options=FAST)
    with caplog.at_level(logging.WARNING, logger="plyra_trace"):
        sent = [old.send_task("w.add", args=[n, 10]) for n in range(2)]
    warnings = [r for r in caplog.records if "protocol 1" in r.getMessage()]
    assert len(warnings) == 1
    assert not warnings[0].exc_info  # an advice, not a crash: no traceback
    ids = {r.id for r in sent}
    runs = wait_for(
        exporter,
        lambda s: s.name == "run w.add" and s.attributes.get("messaging.message.id") in ids,
        count=2,
    )
    assert sorted(r.attributes["output.value"] for r in runs) == ["10", "11"]
    assert all(r.attributes["celery.state"] == "SUCCESS" for r in runs)
    assert not [s for s in exporter.get_finished_spans() if s.name.startswith("publish ")]


def test_eager_tasks_nest_in_the_caller(exporter, app):
    from celery import Celery

    eager = Celery("eager", broker="memory://", backend="cache+memory://")
    eager.conf.update(task_always_eager=True)

    @eager.task(name="e.double", shared=False)
    def double(x: int) -> int:
        return x * 2

    @plyra_trace.agent(name="planner")
    def planner() -> int:
        return int(double.delay(21).get())

    assert planner() == 42  # instrumented by the module's app fixture: signals are process-wide
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert "publish e.double" not in spans  # nothing crosses a queue
    assert spans["run e.double"].parent.span_id == spans["planner"].context.span_id
    assert spans["run e.double"].attributes["output.value"] == "42"
