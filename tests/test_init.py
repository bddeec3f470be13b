"""init(): endpoints, protocols, headers, environment, re-init, never blocking the caller."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import textwrap
import time
from concurrent import futures
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import plyra_trace
from plyra_trace import _export

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@plyra_trace.agent(name="unit")
def unit_of_work(x: int) -> int:
    return x


@pytest.mark.parametrize("suffix", ["", "/", "/v1/traces"])
def test_base_and_full_urls_post_to_v1_traces(receiver, suffix):
    handle = plyra_trace.init("urls", endpoint=receiver.url + suffix)
    unit_of_work(1)
    handle.shutdown()
    spans = receiver.wait_for(lambda s: len(s) == 1)
    assert spans[0].name == "unit"
    assert spans[0].resource["service.name"] == "urls"
    assert spans[0].resource["openinference.project.name"] == "urls"
    assert receiver.requests[0]["content-type"] == "application/x-protobuf"


def test_headers_and_api_key_reach_the_backend(receiver):
    handle = plyra_trace.init(
        "auth", endpoint=receiver.url, headers={"X-Team": "agents"}, api_key="pk-123"
    )
    unit_of_work(1)
    handle.shutdown()
    receiver.wait_for(lambda s: len(s) == 1)
    assert receiver.requests[0]["x-team"] == "agents"
    assert receiver.requests[0]["authorization"] == "Bearer pk-123"


def test_explicit_authorization_header_wins_over_api_key():
    headers = _export.resolve_headers({"Authorization": "Basic abc"}, "pk")
    assert headers == {"Authorization": "Basic abc"}


def test_environment_applies_when_arguments_are_absent(receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-env=yes")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "env-service")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    handle = plyra_trace.init()
    unit_of_work(1)
    handle.shutdown()
    span = receiver.wait_for(lambda s: len(s) == 1)[0]
    assert span.service == "env-service"
    assert span.resource["deployment.environment"] == "staging"
    assert receiver.requests[0]["x-env"] == "yes"


def test_explicit_arguments_win_over_environment(receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "env-service")
    handle = plyra_trace.init("explicit", endpoint=receiver.url, service_name="api")
    unit_of_work(1)
    handle.shutdown()
    span = receiver.wait_for(lambda s: len(s) == 1)[0]
    assert span.service == "api"
    assert span.resource["plyra.project"] == "explicit"


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="sample_rate"):
        plyra_trace.init("x", sample_rate=2)
    with pytest.raises(ValueError, match="protocol"):
        plyra_trace.init("x", endpoint="http://localhost:4318", protocol="carrier-pigeon")
    with pytest.raises(ValueError, match="http"):
        plyra_trace.init("x", endpoint="localhost:4318")


def test_grpc_export_to_a_real_grpc_receiver():
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received = []

    class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            received.append((request, dict(context.invocation_metadata())))
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        handle = plyra_trace.init(
            "grpc-project",
            endpoint=f"http://127.0.0.1:{port}",
            protocol="grpc",
            headers={"x-team": "agents"},
        )
        unit_of_work(1)
        handle.shutdown(timeout=10)
    finally:
        server.stop(0)
    request, metadata = received[0]
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.name == "unit"
    assert metadata["x-team"] == "agents"


def test_dead_endpoint_costs_the_caller_nothing_and_shutdown_is_bounded(caplog):
    handle = plyra_trace.init(
        "dead", endpoint=f"http://127.0.0.1:{closed_port()}", max_queue_size=20, timeout=1
    )
    with caplog.at_level(logging.WARNING):
        for i in range(500):
            assert unit_of_work(i) == i
        started = time.monotonic()
        handle.shutdown(timeout=1.0)
        assert time.monotonic() - started < 3.0
    assert handle.dropped_spans > 0
    queue_warnings = [r for r in caplog.records if "export queue full at" in r.getMessage()]
    assert len(queue_warnings) == 1
    assert "max_queue_size" in queue_warnings[0].getMessage()


def test_second_init_replaces_without_double_export():
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    plyra_trace.init("one", exporter=first, batch=False, console=False)
    handle = plyra_trace.init("one", exporter=second, batch=False, console=False)
    unit_of_work(1)
    handle.shutdown()
    assert len(first.get_finished_spans()) == 0
    assert len(second.get_finished_spans()) == 1


def test_init_after_shutdown_works_and_takes_the_new_project():
    memory = InMemorySpanExporter()
    plyra_trace.init("before", exporter=InMemorySpanExporter(), console=False).shutdown()
    unit_of_work(0)  # between shutdown and init: not exported anywhere, not an error
    handle = plyra_trace.init("after", exporter=memory, batch=False, console=False)
    unit_of_work(1)
    handle.shutdown()
    (span,) = memory.get_finished_spans()
    assert span.resource.attributes["service.name"] == "after"


def test_batch_false_exports_before_the_call_returns(receiver):
    handle = plyra_trace.init("sync", endpoint=receiver.url, batch=False)
    unit_of_work(1)
    assert len(receiver.spans) == 1
    handle.shutdown()


def test_sampling_is_parent_based():
    memory = InMemorySpanExporter()
    handle = plyra_trace.init("sampled", exporter=memory, batch=False, console=False, sample_rate=0)
    unit_of_work(1)
    assert memory.get_finished_spans() == ()
    sampled_parent = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with plyra_trace.continue_trace(plyra_trace.extract_context(sampled_parent)):
        unit_of_work(2)
    handle.shutdown()
    (span,) = memory.get_finished_spans()
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
    )


def test_attaches_to_an_application_provider_instead_of_replacing_it():
    result = run_python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import plyra_trace

        app_exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(app_exporter))
        trace.set_tracer_provider(provider)
        ours = InMemorySpanExporter()
        handle = plyra_trace.init("attached", exporter=ours, batch=False, console=False)
        assert trace.get_tracer_provider() is provider
        plyra_trace.tool(lambda: 1)()
        handle.shutdown()
        assert len(app_exporter.get_finished_spans()) == 1
        assert len(ours.get_finished_spans()) == 1
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_console_mode_prints_a_tree_on_stderr():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "basic_agent.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("trace ") and "my-agent" in lines[0] and "2 spans" in lines[0]
    assert lines[1].startswith("└─ researcher  [AGENT]") and "session=session-abc" in lines[1]
    assert lines[2].startswith("   └─ web-search  [TOOL]") and "OK" in lines[2]
    assert "{" not in lines[0]  # a tree, not a JSON dump


def test_forked_children_do_not_share_the_parents_export_connection(receiver):
    """Celery and gunicorn fork after the parent exported: a child opens its own connection."""
    import os

    session = _export._fork_safe_session()
    pools = session.get_adapter(receiver.url).poolmanager.pools
    session.post(f"{receiver.url}/v1/traces", data=b"")  # a keep-alive connection
    assert len(pools) == 1
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os._exit(0 if len(pools) == 0 else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(pools) == 1  # the parent keeps its own


_TERMINATED_SCRIPT = """
import signal, sys, time
import plyra_trace
if sys.argv[2] == "own-handler":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
plyra_trace.init("term", endpoint=sys.argv[1], console=False, schedule_delay_millis=60_000)

@plyra_trace.agent(name="worker")
def work():
    return 1

work()
print("READY", flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize("handler", ["default", "own-handler"])
def test_sigterm_exports_the_queued_spans(receiver, handler):
    """SIGTERM's default action skips atexit (docker stop, pods): the queued batch must still go;
    an application's own SIGTERM handler is left in charge."""
    process = subprocess.Popen(
        [sys.executable, "-c", _TERMINATED_SCRIPT, receiver.url, handler],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "READY"
    assert receiver.spans == []  # the export timer (60 s) has not fired
    process.terminate()
    code = process.wait(20)
    assert code == (-signal.SIGTERM if handler == "default" else 3)
    assert [s.name for s in receiver.spans] == ["worker"]


def test_user_processors_see_every_span_whichever_hooks_they_define() -> None:
    """The pipeline skips hooks that do nothing; every hook a processor defines still runs."""
    from opentelemetry.sdk.trace import SpanProcessor

    seen: list[str] = []

    class Starts(SpanProcessor):
        def on_start(self, span, parent_context=None):  # type: ignore[no-untyped-def]
            seen.append(f"start {span.name}")

    class Ends(SpanProcessor):
        def on_end(self, span):  # type: ignore[no-untyped-def]
            seen.append(f"end {span.name}")

    per_instance = SpanProcessor()
    per_instance.on_end = lambda span: seen.append(f"instance {span.name}")  # type: ignore[method-assign]
    memory = InMemorySpanExporter()
    handle = plyra_trace.init(
        "hooks",
        exporter=memory,
        batch=False,
        console=False,
        span_processors=[Starts(), Ends(), per_instance],
    )
    unit_of_work(1)
    handle.shutdown()
    assert seen == ["start unit", "end unit", "instance unit"]
    assert [s.name for s in memory.get_finished_spans()] == ["unit"]
