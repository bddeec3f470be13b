"""guardrails-ai (>= 0.5.1) traces itself: its spans become plyra GUARD decisions.

One GUARD decision per ``Guard`` call (its ``guard`` span), with ``guard.*`` written by the same
``guard_attributes`` as ``@guard``. Each validator's span reports an outcome; a pass allows, a
failure acts by the validator's ``on_fail`` (``ON_FAIL_ACTIONS``); the guard takes the most
severe, and lists every validator in ``guard.details``. Validator spans become EVALUATOR spans and
steps CHAIN spans, so one call counts once. ``plyra_trace.instrument("guardrails")`` switches
guardrails' own tracing on; importing this module (the package does) adds the reader to
``AutoSpanProcessor``. guardrails itself is never imported here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.sdk.trace import ReadableSpan, Span

from plyra_trace import _auto
from plyra_trace import _semconv as sc
from plyra_trace._guard import guard_attributes
from plyra_trace._processors import attributes_of, rebuilt

__all__ = ["ON_FAIL_ACTIONS", "guard_call_attributes", "validator_outcome"]

SCOPE: Final = "guardrails-ai"
PROVIDER: Final = "guardrails-ai"

_GUARD_SPAN: Final = "guard"  # the span of one Guard call (type guardrails/guard)
_GUARDRAILS_TYPE: Final = "type"
_VALIDATOR_TYPE: Final = "guardrails/guard/step/validator"
_STEP_TYPE: Final = "guardrails/guard/step"

# A failed validator acts by its on_fail; unknown values are recorded lower-cased as they are.
ON_FAIL_ACTIONS: Final = {
    "exception": "block",
    "refrain": "block",
    "fix": "modify",
    "fix_reask": "modify",
    "reask": "modify",
    "filter": "modify",
    "noop": "flag",
    "custom": "flag",
}
_SEVERITY: Final = {"block": 0, "modify": 1, "redact": 2, "flag": 3, "allow": 5}
_UNKNOWN_SEVERITY: Final = 4


def text(value: Any) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def _on_fail(value: Any) -> str:
    """``OnFailAction.FIX`` (how guardrails writes it) -> ``fix``."""
    said = text(value) or "noop"
    return said.rsplit(".", 1)[-1].lower()


def validator_outcome(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """What one guardrails-ai validator said, from its span's attributes."""
    outcome = "error"  # no output: the validator itself raised
    error = text(attributes.get("validator.validate.output.error_message"))
    output = attributes.get(sc.OUTPUT_VALUE)
    if isinstance(output, str):
        try:
            parsed = json.loads(output)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            outcome = str(parsed.get("outcome") or ("fail" if error else "pass"))
    on_fail = _on_fail(attributes.get("validator.on_fail"))
    action = "allow" if outcome == "pass" else ON_FAIL_ACTIONS.get(on_fail, on_fail)
    said: dict[str, Any] = {
        "validator": text(attributes.get("validator.name")) or "validator",
        "outcome": outcome,
        "on_fail": on_fail,
        "action": action,
    }
    if error:
        said["error"] = error
    return said


def guard_call_attributes(
    attributes: Mapping[str, Any], validators: list[dict[str, Any]]
) -> dict[str, Any]:
    """``guard.*`` for one guardrails-ai ``Guard`` call from its validators' outcomes."""
    name = text(attributes.get(sc.GUARD_NAME)) or "guard"
    deciding = min(
        validators,
        key=lambda v: _SEVERITY.get(v["action"], _UNKNOWN_SEVERITY),
        default=None,
    )
    action = deciding["action"] if deciding is not None else "allow"
    triggered = action != "allow"
    details: dict[str, Any] = {"guard": name, "validators": validators}
    passed = attributes.get("validation_passed")
    if isinstance(passed, bool):
        details["validation_passed"] = passed
    policy = deciding["validator"] if triggered and deciding is not None else name
    return {
        **sc.kind_attributes(sc.SpanKind.GUARD),
        **guard_attributes(policy, action, triggered, 1.0, details, PROVIDER),
    }


def _part_kind(attributes: Mapping[str, Any]) -> sc.SpanKind | None:
    """The kind for a guardrails-ai span inside a guard call (validators, steps)."""
    kind = attributes.get(_GUARDRAILS_TYPE)
    if kind == _VALIDATOR_TYPE:
        return sc.SpanKind.EVALUATOR
    if kind == _STEP_TYPE:
        return sc.SpanKind.CHAIN
    return None


class _Reader:
    """Collects validator outcomes under each guard call and writes the decision at its end."""

    def started(self, span: Span, entry: _auto.OpenSpan) -> None:
        if span.name == _GUARD_SPAN:
            entry.state = []  # the validators' outcomes, appended as they finish

    def finished(self, span: ReadableSpan, entry: _auto.OpenSpan) -> ReadableSpan:
        attributes = dict(attributes_of(span))
        if entry.state is not None:
            attributes.update(guard_call_attributes(attributes, entry.state))
            return rebuilt(span, attributes)
        if attributes.get(_GUARDRAILS_TYPE) == _VALIDATOR_TYPE:
            node = entry.parent
            while node is not None and node.state is None:
                node = node.parent
            if node is not None:
                node.state.append(validator_outcome(attributes))
        kind = _part_kind(attributes)
        if kind is None:
            return span
        attributes.update(sc.kind_attributes(kind))
        return rebuilt(span, attributes)


_auto.add_scope_reader(SCOPE, _Reader())
