"""plyra-guard: a real ActionGuard with a YAML policy, its decisions as GUARD spans in the trace."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from opentelemetry import trace
from plyra_guard import ActionGuard
from plyra_guard.exceptions import ExecutionBlockedError
from plyra_guard.observability.exporters.stdout_exporter import StdoutExporter

import plyra_trace
from plyra_trace.integrations.plyra_guard import instrument, instrumented, uninstrument

POLICY = """
version: "1.0"
policies:
  - name: no-system-files
    action_types: ["file.*"]
    condition: "parameters.path.startswith('/etc/')"
    verdict: BLOCK
    message: "system files are off limits"
observability:
  exporters: []
"""


@pytest.fixture
def guard(tmp_path: Path) -> ActionGuard:
    config = tmp_path / "guard.yaml"
    config.write_text(POLICY)
    return ActionGuard.from_config(str(config))


def _guard_spans(exporter):
    return [
        s for s in exporter.get_finished_spans() if s.attributes.get("plyra.span.kind") == "GUARD"
    ]


def test_allowed_and_blocked_calls_are_guard_spans_in_the_agents_trace(exporter, guard):
    provider_before = trace.get_tracer_provider()
    instrument(guard)
    assert trace.get_tracer_provider() is provider_before  # never replaced

    @guard.protect("file.read")
    def read_file(path: str) -> str:
        return f"contents of {path}"

    @plyra_trace.agent(name="researcher")
    def research() -> str:
        text = read_file("/tmp/notes.txt")
        with pytest.raises(ExecutionBlockedError) as blocked:
            read_file("/etc/passwd")
        assert "off limits" in str(blocked.value)
        return text

    assert research() == "contents of /tmp/notes.txt"

    (agent_span,) = [s for s in exporter.get_finished_spans() if s.name == "researcher"]
    allowed, refused = sorted(_guard_spans(exporter), key=lambda s: s.start_time)
    for span in (allowed, refused):
        assert span.context.trace_id == agent_span.context.trace_id
        assert span.parent.span_id == agent_span.context.span_id
        assert span.name == "plyra-guard file.read"
        assert span.attributes["openinference.span.kind"] == "GUARDRAIL"
        assert span.attributes["guard.provider"] == "plyra-guard"
        assert span.attributes["agent.name"] == "researcher"
        assert span.status.is_ok  # a block is a decision, not an error
    assert allowed.attributes["guard.action"] == "allow"
    assert allowed.attributes["guard.triggered"] is False
    assert refused.attributes["guard.action"] == "block"
    assert refused.attributes["guard.triggered"] is True
    assert refused.attributes["guard.policy"] == "no-system-files"
    details = json.loads(refused.attributes["guard.details"])
    assert details["verdict"] == "BLOCK"
    assert details["reason"] == "system files are off limits"
    assert details["action_type"] == "file.read"
    assert details["evaluator.policy_engine"] == "BLOCK: system files are off limits"
    assert details["allowed_by"].split(",")[0] == "schema_validator"
    assert 0.0 <= allowed.attributes["guard.confidence"] <= 1.0

    # The other way round: plyra-guard's audit log leads to the trace and the span.
    entries = guard.get_audit_log()
    assert [e.verdict.value for e in entries] == ["ALLOW", "BLOCK"]
    for entry, span in zip(entries, (allowed, refused), strict=True):
        assert entry.trace_id == trace.format_trace_id(agent_span.context.trace_id)
        assert entry.span_id == trace.format_span_id(span.context.span_id)
        assert entry.to_dict()["trace_id"] == entry.trace_id


def test_exporters_configured_in_yaml_write_the_trace_id(exporter, guard):
    stream = io.StringIO()
    guard.add_exporter(StdoutExporter(stream=stream))
    instrument(guard)

    @guard.protect("file.read")
    def read_file(path: str) -> str:
        return path

    with plyra_trace.SpanBuilder("request"):
        read_file("/tmp/a")
    (line,) = stream.getvalue().splitlines()
    (span,) = _guard_spans(exporter)
    assert json.loads(line)["trace_id"] == trace.format_trace_id(span.context.trace_id)


def test_twice_instrumented_records_once_and_uninstrument_restores(exporter, guard):
    instrument(guard)
    instrument(guard)

    @guard.protect("file.read")
    def read_file(path: str) -> str:
        return path

    read_file("/tmp/a")
    assert len(_guard_spans(exporter)) == 1
    assert instrumented(guard)

    uninstrument(guard)
    assert not instrumented(guard)
    read_file("/tmp/b")
    assert len(_guard_spans(exporter)) == 1
    assert "evaluate" not in vars(guard.pipeline)
    assert not hasattr(guard.get_audit_log()[-1], "trace_id")


def test_unknown_verdicts_are_recorded_lower_cased(exporter, guard, monkeypatch):
    from plyra_guard.core.guard import EvaluationPipeline
    from plyra_guard.core.intent import EvaluatorResult

    class Odd:
        value = "QUARANTINE"

    def evaluate(self, intent):
        return [EvaluatorResult(verdict=Odd(), reason="odd", evaluator_name="future")]

    # plyra-guard one day adds a verdict (the only one here, so it decides): recorded as it is.
    monkeypatch.setattr(EvaluationPipeline, "evaluate", evaluate)
    instrument(guard)
    guard.evaluate(_intent())
    (span,) = _guard_spans(exporter)
    assert span.attributes["guard.action"] == "quarantine"
    assert span.attributes["guard.triggered"] is True
    assert span.attributes["guard.policy"] == "future"


def test_a_failing_hook_never_changes_the_decision_or_the_exception(exporter, guard, monkeypatch):
    from plyra_trace.integrations import plyra_guard as integration

    def broken(*args, **kwargs):
        raise RuntimeError("hook bug")

    monkeypatch.setattr(integration, "_decision", broken)
    monkeypatch.setattr(integration, "_stamp", broken)
    instrument(guard)

    @guard.protect("file.delete")
    def delete(path: str) -> bool:
        return True

    assert delete("/tmp/x") is True
    with pytest.raises(ExecutionBlockedError):
        delete("/etc/hosts")
    assert [e.verdict.value for e in guard.get_audit_log()] == ["ALLOW", "BLOCK"]


def test_an_evaluator_error_passes_through_unchanged_and_fails_the_span(exporter, guard):
    from plyra_guard.evaluators.base import BaseEvaluator

    class Exploding(BaseEvaluator):
        name = "exploding"

        def evaluate(self, intent):
            raise KeyError("missing")

    guard.pipeline.add(Exploding())
    instrument(guard)

    @guard.protect("file.read")
    def read_file(path: str) -> str:
        return path

    with pytest.raises(KeyError, match="missing"):
        read_file("/tmp/a")
    (span,) = _guard_spans(exporter)
    assert not span.status.is_ok


def _intent():
    from plyra_guard.core.intent import ActionIntent

    return ActionIntent(
        action_type="file.read", tool_name="read", parameters={"path": "/tmp"}, agent_id="a"
    )


def test_a_block_before_the_evaluators_is_recorded_from_its_audit_entry(exporter, guard):
    from plyra_guard.core.intent import AgentCall

    instrument(guard)
    intent = _intent()
    intent.instruction_chain = [AgentCall(agent_id="a", trust_level=0.5, instruction="loop")]

    @plyra_trace.agent(name="planner")
    def plan() -> None:
        # A delegation cycle: plyra-guard's cascade controller blocks before any evaluator runs.
        with pytest.raises(ExecutionBlockedError, match="Cycle detected"):
            guard._execute_guarded(intent, lambda: None, (), {})

    plan()
    (span,) = _guard_spans(exporter)
    (agent_span,) = [s for s in exporter.get_finished_spans() if s.name == "planner"]
    assert span.parent.span_id == agent_span.context.span_id
    assert span.attributes["guard.action"] == "block"
    assert span.attributes["guard.policy"] == "cascade_controller"
    assert span.start_time <= span.end_time
    (entry,) = guard.get_audit_log()
    assert entry.span_id == trace.format_span_id(span.context.span_id)
