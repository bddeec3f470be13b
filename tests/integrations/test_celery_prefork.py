"""A real prefork worker in a subprocess, on the filesystem broker and on a real ``redis-server``:
one trace from the producing agent through the worker's agent, no span lost at shutdown, and
the runs a dying child takes along (time limits, worker lost) still recorded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import plyra_trace
from plyra_trace.integrations import celery as celery_integration
from tests.integrations.celery_app import BLOCK, DIE, HARD, SOFT, WRITE, make_app
from tests.otlp_receiver import OTLPReceiver, ReceivedSpan

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(90)

PRODUCER: int = 4  # SpanKind and status code values in OTLP
CONSUMER: int = 5
ERROR: int = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self) -> int:
        """SIGTERM (warm shutdown) and wait for the whole worker to exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError("the worker ignored SIGTERM:\n" + self.output()) from None


def start_worker(
    folder: Path, endpoint: str, redis_url: str | None = None, delay_ms: int = 100
) -> Worker:
    """``celery -A tests.integrations.celery_app worker --pool prefork -c 1``, once it is ready."""
    log = folder / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PLYRA_CELERY_TEST_DIR": str(folder),
        "PLYRA_CELERY_TEST_ENDPOINT": endpoint,
        "PLYRA_CELERY_TEST_DELAY_MS": str(delay_ms),
    }
    if redis_url:
        env["PLYRA_CELERY_TEST_REDIS"] = redis_url
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.integrations.celery_app",
        "worker",
        "--pool",
        "prefork",
        "-c",
        "1",
        "-n",
        f"prefork-{uuid.uuid4().hex[:8]}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        os.environ.get("PLYRA_CELERY_TEST_LOGLEVEL", "info"),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    worker = Worker(process, log)
    deadline = time.monotonic() + 30
    while not (folder / "ready").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            raise AssertionError("the worker did not start:\n" + worker.output())
        time.sleep(0.05)
    return worker


@pytest.fixture
def producer(receiver: OTLPReceiver) -> Iterator[plyra_trace.PlyraTrace]:
    """This process as the producing side: traced publishes, exported as they end."""
    handle = plyra_trace.init(
        "celery-tests", service_name="planner", endpoint=receiver.url, batch=False, console=False
    )
    celery_integration.instrument()
    yield handle
    celery_integration.uninstrument()
    handle.shutdown()


def wait_for(
    receiver: OTLPReceiver, predicate: Callable[[ReceivedSpan], bool], timeout: float = 15.0
) -> ReceivedSpan:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for span in list(receiver.spans):
            if predicate(span):
                return span
        time.sleep(0.02)
    raise AssertionError(f"no such span among {sorted(s.name for s in receiver.spans)}")


@pytest.fixture(params=["filesystem", "redis"])
def broker(request: pytest.FixtureRequest) -> str | None:
    """None for the filesystem broker, a Redis URL for Redis."""
    if request.param == "filesystem":
        return None
    return str(request.getfixturevalue("redis_url"))


def test_one_trace_from_the_producing_agent_to_the_workers_agent_and_nothing_lost(
    tmp_path, receiver, producer, broker
):
    # The worker exports only when its 60 s batch timer fires or when it is flushed: every one
    # of its spans that arrives got there through the flush at shutdown.
    worker = start_worker(tmp_path, receiver.url, broker, delay_ms=60_000)
    try:
        app = make_app(str(tmp_path), broker)

        @plyra_trace.agent(name="planner")
        def planner() -> str:
            with plyra_trace.session("s-7"), plyra_trace.handoff(to="writer", reason="draft"):
                return str(app.send_task(WRITE, args=["ev"]).get(timeout=20, interval=0.05))

        assert planner() == "ev: market; ev: outlook"
        assert {s.service for s in receiver.spans} == {"planner"}  # nothing from the worker yet
    finally:
        code = worker.stop()
    assert code == 0, worker.output()

    spans = {s.name: s for s in receiver.spans}
    agent, publish = spans["planner"], spans[f"publish {WRITE}"]
    run, writer, tool = spans[f"run {WRITE}"], spans["writer"], spans["outline"]
    assert {run.service, writer.service, tool.service} == {"writer"}
    assert len({s.trace_id for s in (agent, publish, run, writer, tool)}) == 1
    assert publish.kind == PRODUCER and run.kind == CONSUMER
    assert publish.parent_id == agent.span_id
    assert run.parent_id == publish.span_id
    assert writer.parent_id == run.span_id and tool.parent_id == writer.span_id
    assert run.attributes["agent.handoff.from"] == "planner"
    assert run.attributes["agent.handoff.to"] == "writer"
    assert run.attributes["agent.handoff.reason"] == "draft"
    assert run.attributes["agent.handoff.protocol"] == "queue"
    assert run.attributes["celery.state"] == "SUCCESS"
    assert run.attributes["messaging.celery.queue_wait_ms"] >= 0
    assert writer.attributes["session.id"] == "s-7" and tool.attributes["session.id"] == "s-7"
    assert writer.attributes["output.value"] == "ev: market; ev: outlook"
    assert len(receiver.spans) == 5  # each exactly once: no span exported twice across the fork


# Known flake (about 1 run in 10 under load, also before this session's changes): after the hard
# time limit kills the prefork child, billiard's pool can hang on a lock that child held, and the
# worker then never finishes its warm shutdown. A fresh worker on a rerun is not affected.
@pytest.mark.flaky(reruns=2)
def test_time_limits_and_a_lost_worker_are_error_runs_in_the_trace(tmp_path, receiver, producer):
    worker = start_worker(tmp_path, receiver.url, delay_ms=50)
    try:
        app = make_app(str(tmp_path))

        def run_of(task: str, error: str) -> tuple[ReceivedSpan, ReceivedSpan]:
            """Send ``task``, expect it to fail with ``error``; its publish and run spans."""
            with plyra_trace.handoff(to="writer", reason=f"try {task}"):
                result = app.send_task(task, args=[10] if task != DIE else [])
            with pytest.raises(Exception) as failure:
                result.get(timeout=20, interval=0.05)
            assert type(failure.value).__name__ == error, worker.output()
            run = wait_for(receiver, lambda s: s.name == f"run {task}")
            publish = wait_for(receiver, lambda s: s.name == f"publish {task}")
            assert run.parent_id == publish.span_id and run.trace_id == publish.trace_id
            assert run.kind == CONSUMER and run.status_code == ERROR and run.service == "writer"
            assert run.attributes["error.type"] == error
            # the run recorded by the main process continues the handoff like any other
            assert run.attributes["agent.handoff.reason"] == f"try {task}"
            assert run.attributes["agent.handoff.to"] == "writer"
            return publish, run

        # raised inside the task: the child records it on its own run span
        _, soft = run_of(SOFT, "SoftTimeLimitExceeded")
        assert soft.status_message == "SoftTimeLimitExceeded: soft time limit (0.3 s) exceeded"
        assert soft.attributes["celery.state"] == "FAILURE"
        # the child is killed with its span: the main process records the run in its place
        _, hard = run_of(HARD, "TimeLimitExceeded")
        assert hard.status_message == "TimeLimitExceeded: hard time limit (1 s) exceeded"
        assert hard.end_ns - hard.start_ns >= 0.9e9  # from when the child started it
        _, lost = run_of(DIE, "WorkerLostError")
        assert lost.status_message.startswith("WorkerLostError: Worker exited prematurely")
        assert "SIGKILL" in lost.status_message
    finally:
        code = worker.stop()
    assert code == 0, worker.output()
    runs = [s.name for s in receiver.spans if s.name.startswith("run ")]
    assert sorted(runs) == sorted(f"run {t}" for t in (SOFT, HARD, DIE))  # one each, no duplicate


def test_a_task_revoked_while_running_is_one_revoked_run(tmp_path, receiver, producer, redis_url):
    """Revoke with terminate needs remote control (a broadcast): Redis has it. The child that
    runs the task is sent SIGTERM; its main process records the run, and only it does."""
    from celery.exceptions import TaskRevokedError

    worker = start_worker(tmp_path, receiver.url, redis_url, delay_ms=50)
    try:
        app = make_app(str(tmp_path), redis_url)
        result = app.send_task(BLOCK)
        deadline = time.monotonic() + 15
        while not (tmp_path / f"started-{result.id}").exists():
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.02)
        app.control.revoke(result.id, terminate=True)
        with pytest.raises(TaskRevokedError):
            result.get(timeout=15, interval=0.05)
        run = wait_for(receiver, lambda s: s.name == f"run {BLOCK}")
        publish = wait_for(receiver, lambda s: s.name == f"publish {BLOCK}")
    finally:
        code = worker.stop()
    assert code == 0, worker.output()
    assert run.parent_id == publish.span_id and run.trace_id == publish.trace_id
    assert run.status_code == ERROR and run.service == "writer"
    assert run.status_message == "revoked: terminated (SIGTERM)"
    assert run.attributes["celery.state"] == "REVOKED"
    assert [s.name for s in receiver.spans].count(f"run {BLOCK}") == 1
