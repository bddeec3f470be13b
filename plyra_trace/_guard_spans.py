"""Guard libraries that trace themselves: their spans turned into plyra GUARD decisions.

guardrails-ai (>= 0.5.1) and NeMo Guardrails (with its OpenTelemetry tracing adapter) write spans
through the global tracer provider. ``AutoSpanProcessor`` hands their spans to these pure
functions, which add ``guard.*`` through the same ``guard_attributes`` as ``@guard``:

- guardrails-ai: one GUARD decision per ``Guard`` call (its ``guard`` span). Each validator's span
  reports an outcome; a pass allows, a failure acts by the validator's ``on_fail``
  (``ON_FAIL_ACTIONS``); the guard takes the most severe, and lists every validator in
  ``guard.details``. Validator spans become EVALUATOR spans and steps CHAIN spans, so one call
  counts once.
- NeMo Guardrails: one GUARD decision per input or output rail (``guardrails.rail``): a rail that
  stopped the conversation blocked, any other allowed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from plyra_trace import _semconv as sc
from plyra_trace._guard import guard_attributes

GUARDRAILS_SCOPE: Final = "guardrails-ai"
GUARDRAILS_PROVIDER: Final = "guardrails-ai"
NEMO_SCOPE: Final = "nemo_guardrails"
NEMO_PROVIDER: Final = "nemo-guardrails"

GUARDRAILS_GUARD_SPAN: Final = "guard"  # the span of one Guard call (type guardrails/guard)
_GUARDRAILS_TYPE: Final = "type"
_VALIDATOR_TYPE: Final = "guardrails/guard/step/validator"
_STEP_TYPE: Final = "guardrails/guard/step"
_NEMO_RAIL: Final = "guardrails.rail"
_NEMO_REQUEST: Final = "guardrails.request"

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


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _on_fail(value: Any) -> str:
    """``OnFailAction.FIX`` (how guardrails writes it) -> ``fix``."""
    text = _text(value) or "noop"
    return text.rsplit(".", 1)[-1].lower()


def is_guardrails_validator(attributes: Mapping[str, Any]) -> bool:
    return attributes.get(_GUARDRAILS_TYPE) == _VALIDATOR_TYPE


def validator_outcome(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """What one guardrails-ai validator said, from its span's attributes."""
    outcome = "error"  # no output: the validator itself raised
    error = _text(attributes.get("validator.validate.output.error_message"))
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
        "validator": _text(attributes.get("validator.name")) or "validator",
        "outcome": outcome,
        "on_fail": on_fail,
        "action": action,
    }
    if error:
        said["error"] = error
    return said


def guardrails_guard_attributes(
    attributes: Mapping[str, Any], validators: list[dict[str, Any]]
) -> dict[str, Any]:
    """``guard.*`` for one guardrails-ai ``Guard`` call from its validators' outcomes."""
    name = _text(attributes.get(sc.GUARD_NAME)) or "guard"
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
        **guard_attributes(policy, action, triggered, 1.0, details, GUARDRAILS_PROVIDER),
    }


def guardrails_part_kind(attributes: Mapping[str, Any]) -> sc.SpanKind | None:
    """The kind for a guardrails-ai span inside a guard call (validators, steps)."""
    kind = attributes.get(_GUARDRAILS_TYPE)
    if kind == _VALIDATOR_TYPE:
        return sc.SpanKind.EVALUATOR
    if kind == _STEP_TYPE:
        return sc.SpanKind.CHAIN
    return None


def nemo_attributes(name: str, attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    """``guard.*`` for a NeMo Guardrails rail span; CHAIN for its request span; None otherwise."""
    if name == _NEMO_REQUEST:
        return dict(sc.kind_attributes(sc.SpanKind.CHAIN))
    if name != _NEMO_RAIL:
        return None
    rail = _text(attributes.get("rail.name")) or "rail"
    stopped = attributes.get("rail.stop") is True
    decisions = attributes.get("rail.decisions")
    details: dict[str, Any] = {
        "rail": rail,
        "rail_type": _text(attributes.get("rail.type")),
        "decisions": list(decisions) if isinstance(decisions, list | tuple) else [],
    }
    return {
        **sc.kind_attributes(sc.SpanKind.GUARD),
        sc.GUARD_NAME: rail,
        **guard_attributes(
            rail, "block" if stopped else "allow", stopped, 1.0, details, NEMO_PROVIDER
        ),
    }
