"""plyra-guard: each ``ActionGuard`` decision as a GUARD span, each audit entry tied to its trace.

    guard = ActionGuard.from_config("guard.yaml")
    instrument(guard)

Two of plyra-guard's own seams, no patching of its classes:

- The evaluation: the guard's ``pipeline.evaluate`` (an instance attribute, so only this guard is
  touched) is timed, and its decision recorded as one GUARD span, a child of the caller's span,
  from the first evaluator's start to the last one's end (not the guarded tool: its duration is
  the guard's latency). The span is created after the evaluation with those times and all its
  attributes in one pass, which costs about a third less than a span kept open around the
  evaluators; the price is that a span an evaluator opens itself is a sibling, not a child.
  Its attributes, the same kind attributes as ``@guard``: ``guard.action`` from the verdict (see
  ``VERDICT_ACTIONS``), ``guard.policy``, ``guard.triggered``, ``guard.confidence`` (the risk
  score when an evaluator computed one), ``guard.details`` (verdict, reason, action type,
  evaluator results) and ``guard.provider="plyra-guard"``.
- The audit log: an exporter (``guard.add_exporter``, put first so every other exporter sees the
  stamp) gives each ``AuditEntry`` ``trace_id`` and ``span_id`` (also in ``to_dict()``, so the JSON
  lines plyra-guard writes lead to the trace). A decision taken before the evaluators (cascade or
  budget limits) has no evaluation span; its entry becomes a GUARD span from the intent's creation
  to the audit write.

plyra-guard's own ``OTelExporter`` replaces the global tracer provider; this integration never
does. A BLOCK still raises ``ExecutionBlockedError`` to the caller: a failure in these hooks is
logged once and never changes the decision or an exception.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.trace import SpanContext
from plyra_guard import ActionGuard
from plyra_guard.core.intent import AuditEntry

from plyra_trace import _runtime
from plyra_trace import _semconv as sc
from plyra_trace._context import current_agent, scope_attributes
from plyra_trace._guard import guard_attributes
from plyra_trace._safety import log_once
from plyra_trace._wrapper import _fail

__all__ = ["PROVIDER", "VERDICT_ACTIONS", "instrument", "instrumented", "uninstrument"]

PROVIDER: Final = "plyra-guard"
# ESCALATE and DEFER stop the call (plyra-guard raises ExecutionBlockedError for both), so they
# are blocks; the verdict itself stays in ``guard.details``. Unknown verdicts are lower-cased.
VERDICT_ACTIONS: Final = {
    "ALLOW": "allow",
    "BLOCK": "block",
    "WARN": "flag",
    "ESCALATE": "block",
    "DEFER": "block",
}
_SEVERITY: Final = {"BLOCK": 0, "ESCALATE": 1, "DEFER": 2, "WARN": 3, "ALLOW": 4}
_NO_POLICY: Final = "default"  # no rule fired: plyra-guard's default verdict let the call pass
_STATE: Final = "_plyra_trace_instrumentation"
_MAX_PENDING: Final = 1024  # evaluations whose audit entry has not been written (dry runs never)

_lock = threading.Lock()


_VERDICT_NAMES: dict[Any, str] = {}  # Verdict member -> its name (a handful of members)


def _verdict(value: Any) -> str:
    """``Verdict.BLOCK`` -> ``BLOCK`` (cached: this runs for every evaluator of every call)."""
    try:
        return _VERDICT_NAMES[value]
    except (KeyError, TypeError):
        name = str(getattr(value, "value", value)).upper()
        if len(_VERDICT_NAMES) < 64:
            try:
                _VERDICT_NAMES[value] = name
            except TypeError:
                pass
        return name


def _decision(
    verdict: str,
    reason: str,
    results: list[Any],
    *,
    action_type: str,
    agent_id: str,
    risk_score: float | None,
    policy: str | None,
    confidence: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """``guard.*`` and agent attributes for one decision."""
    action = VERDICT_ACTIONS.get(verdict, verdict.lower())
    triggered = verdict != "ALLOW"
    if risk_score is not None:
        confidence = risk_score
    details: dict[str, Any] = {
        "verdict": verdict,
        "reason": reason,
        "action_type": action_type,
        "agent_id": agent_id,
        **extra,
    }
    # Flat scalars (a flat dict encodes without a scrub pass): which evaluators ran, and what
    # each one that did not allow said.
    passed = []
    for result in results:
        name = getattr(result, "evaluator_name", "") or "evaluator"
        said = _verdict(getattr(result, "verdict", ""))
        if said == "ALLOW":
            passed.append(name)
        else:
            details[f"evaluator.{name}"] = f"{said}: {getattr(result, 'reason', '')}"
    if passed:
        details["allowed_by"] = ",".join(passed)
    if risk_score is not None:
        details["risk_score"] = risk_score
    attributes = guard_attributes(
        policy or _NO_POLICY,
        action,
        triggered,
        min(max(float(confidence), 0.0), 1.0),
        details,
        PROVIDER,
    )
    agent = current_agent() or (agent_id if agent_id and agent_id != "default" else None)
    if agent is not None:
        attributes[sc.AGENT_NAME] = agent
    return attributes


def _evaluation_attributes(intent: Any, results: list[Any]) -> dict[str, Any]:
    """The decision the guard takes from these results, as its ``_run_pipeline`` derives it."""
    risk_score: float | None = None
    policy: str | None = None
    for result in results:
        metadata = result.metadata
        if metadata:
            if "risk_score" in metadata:
                risk_score = float(metadata["risk_score"])
            if "policy_name" in metadata:
                policy = str(metadata["policy_name"])
    if results:
        final = min(results, key=lambda r: _SEVERITY.get(_verdict(r.verdict), 5))
        verdict, reason = _verdict(final.verdict), str(final.reason)
        confidence = float(final.confidence)
        if policy is None and verdict != "ALLOW":
            policy = str(final.evaluator_name) or None
    else:
        verdict, reason, confidence = "ALLOW", "No evaluators ran", 1.0
    return _decision(
        verdict,
        reason,
        results,
        action_type=str(intent.action_type),
        agent_id=str(intent.agent_id),
        risk_score=risk_score,
        policy=policy,
        confidence=confidence,
        extra={"action_id": intent.action_id, "tool_name": getattr(intent, "tool_name", None)},
    )


_BASE_ATTRIBUTES: Final = {
    **sc.kind_attributes(sc.SpanKind.GUARD),
    sc.GUARD_NAME: PROVIDER,
    sc.GUARD_PROVIDER: PROVIDER,
}


def _start_attributes() -> dict[str, Any]:
    """Kind, guard and scope (session, user, ...) attributes, as every plyra span starts with."""
    scoped = scope_attributes()
    return {**_BASE_ATTRIBUTES, **scoped} if scoped else dict(_BASE_ATTRIBUTES)


class _TracedAuditEntry(AuditEntry):
    """An ``AuditEntry`` that also names the trace and span of its decision."""

    trace_id: str
    span_id: str

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["trace_id"] = self.trace_id
        data["span_id"] = self.span_id
        return data


class _Instrumentation:
    """One guard's hooks: the traced evaluation and the audit exporter."""

    def __init__(self, guard: ActionGuard) -> None:
        self.guard = guard
        self.pipeline = guard.pipeline
        self.original = self.pipeline.evaluate
        self.had_own = "evaluate" in vars(self.pipeline)  # someone else's instance-level hook
        self.active = True
        self._pending: OrderedDict[str, SpanContext] = OrderedDict()
        self._pending_lock = threading.Lock()

    # --- the evaluation ---------------------------------------------------------------------------
    def evaluate(self, intent: Any) -> list[Any]:
        """Stands in for ``guard.pipeline.evaluate``: the same results, recorded as a GUARD span."""
        if not self.active:
            return self.original(intent)
        start = time.time_ns()
        try:
            results: list[Any] = self.original(intent)
        except BaseException as error:
            self._record(intent, start, None, error)
            raise
        self._record(intent, start, results, None)
        return results

    def _record(
        self, intent: Any, start: int, results: list[Any] | None, error: BaseException | None
    ) -> None:
        end = time.time_ns()
        try:
            attributes = _start_attributes()
            if results is not None:
                attributes.update(_evaluation_attributes(intent, results))
            span = _runtime.tracer.start_span(
                f"{PROVIDER} {intent.action_type}", attributes=attributes, start_time=start
            )
            if error is not None:
                _fail(span, error)  # the engine's failure path, as for any traced call
            else:
                span.end(end)
            context = span.get_span_context()
            if context.is_valid and results is not None:
                self._remember(str(intent.action_id), context)
        except Exception:
            log_once("plyra-guard-span", "plyra_trace: could not record a plyra-guard decision")

    def _remember(self, action_id: str, span: SpanContext) -> None:
        with self._pending_lock:
            self._pending[action_id] = span
            if len(self._pending) > _MAX_PENDING:
                self._pending.popitem(last=False)

    # --- the audit log (an exporter: plyra-guard calls ``export(entry)``) -------------------------
    def export(self, entry: AuditEntry) -> None:
        if not self.active:
            return
        try:
            with self._pending_lock:
                span = self._pending.pop(entry.action_id, None)
            if span is None:
                span = _record_entry(entry)
            if span is not None and span.is_valid:
                _stamp(entry, span)
        except Exception:
            log_once("plyra-guard-audit", "plyra_trace: could not correlate a plyra-guard entry")


def _record_entry(entry: AuditEntry) -> SpanContext | None:
    """A GUARD span for a decision no evaluation span saw (cascade or budget limits)."""
    results = list(entry.evaluator_results or [])
    final = results[-1] if results else None
    attributes = _start_attributes()
    attributes.update(
        _decision(
            _verdict(entry.verdict),
            str(getattr(final, "reason", "")),
            results,
            action_type=entry.action_type,
            agent_id=entry.agent_id,
            risk_score=entry.risk_score or None,
            policy=entry.policy_triggered or (str(getattr(final, "evaluator_name", "")) or None),
            confidence=float(getattr(final, "confidence", 1.0)),
            extra={"action_id": entry.action_id},
        )
    )
    start = int(entry.timestamp.timestamp() * 1e9)
    end = time.time_ns()
    span = _runtime.tracer.start_span(
        f"{PROVIDER} {entry.action_type}", attributes=attributes, start_time=min(start, end)
    )
    span.end(end)
    return span.get_span_context()


def _stamp(entry: AuditEntry, span: SpanContext) -> None:
    trace_id = trace.format_trace_id(span.trace_id)
    span_id = trace.format_span_id(span.span_id)
    try:
        entry.__class__ = _TracedAuditEntry
    except TypeError:  # a future AuditEntry with slots: the attributes below still try
        pass
    entry.trace_id = trace_id  # type: ignore[attr-defined]
    entry.span_id = span_id  # type: ignore[attr-defined]


def _put_first(guard: ActionGuard, exporter: _Instrumentation) -> None:
    """Run our exporter before the others, so the JSON they write carries the trace id."""
    exporters = getattr(getattr(guard, "_audit_log", None), "_exporters", None)
    if isinstance(exporters, list) and exporters and exporters[-1] is exporter:
        exporters.insert(0, exporters.pop())


def instrument(guard: ActionGuard) -> None:
    """Record this guard's decisions as GUARD spans (a second call changes nothing)."""
    with _lock:
        if isinstance(getattr(guard, _STATE, None), _Instrumentation):
            return
        try:
            state = _Instrumentation(guard)
            guard.add_exporter(state)
            _put_first(guard, state)
            state.pipeline.evaluate = state.evaluate  # type: ignore[method-assign]
            setattr(guard, _STATE, state)
        except Exception:
            log_once("plyra-guard-instrument", "plyra_trace: could not instrument a plyra-guard")


def uninstrument(guard: ActionGuard) -> None:
    """Stop recording this guard's decisions; its evaluation runs exactly as before."""
    with _lock:
        state = getattr(guard, _STATE, None)
        if not isinstance(state, _Instrumentation):
            return
        state.active = False
        try:
            if vars(state.pipeline).get("evaluate") == state.evaluate:
                if state.had_own:
                    state.pipeline.evaluate = state.original  # type: ignore[method-assign]
                else:
                    del state.pipeline.evaluate
            exporters = getattr(getattr(guard, "_audit_log", None), "_exporters", None)
            if isinstance(exporters, list) and state in exporters:
                exporters.remove(state)
            delattr(guard, _STATE)
        except Exception:
            log_once("plyra-guard-uninstrument", "plyra_trace: could not uninstrument a guard")


def instrumented(guard: ActionGuard) -> bool:
    """Whether ``guard``'s decisions are being recorded."""
    state = getattr(guard, _STATE, None)
    return isinstance(state, _Instrumentation) and state.active
