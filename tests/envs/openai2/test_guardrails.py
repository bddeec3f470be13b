"""guardrails-ai 0.11 with a validator defined here (no hub): one GUARD decision per Guard call."""

from __future__ import annotations

import json

import pytest
from guardrails import Guard, OnFailAction
from guardrails.errors import ValidationError
from guardrails.validators import FailResult, PassResult, Validator, register_validator

import plyra_trace


@register_validator(name="test/no-secret", data_type="string")
class NoSecret(Validator):
    def _validate(self, value, metadata):
        if "secret" in value:
            return FailResult(
                error_message="mentions a secret", fix_value=value.replace("secret", "[x]")
            )
        return PassResult()


@register_validator(name="test/short", data_type="string")
class Short(Validator):
    def _validate(self, value, metadata):
        return PassResult() if len(value) < 100 else FailResult(error_message="too long")


def _decisions(exporter):
    return [
        s
        for s in exporter.get_finished_spans()
        if s.attributes.get("guard.provider") == "guardrails-ai"
    ]


def test_pass_fix_and_exception_are_allow_modify_and_block(exporter):
    assert "guardrails" in plyra_trace.instrument("guardrails")
    fixing = Guard(name="chat-out").use(NoSecret(on_fail=OnFailAction.FIX))
    noting = Guard(name="notes").use(NoSecret(on_fail=OnFailAction.NOOP), Short())
    strict = Guard(name="strict").use(NoSecret(on_fail=OnFailAction.EXCEPTION))

    @plyra_trace.agent(name="writer")
    def write() -> None:
        assert fixing.validate("hello").validation_passed
        assert fixing.validate("the secret is 42").validated_output == "the [x] is 42"
        with pytest.raises(ValidationError, match="mentions a secret"):
            strict.validate("a secret")
        noting.validate("one secret")  # noop: passes, and the decision says it saw it

    write()
    (agent_span,) = [s for s in exporter.get_finished_spans() if s.name == "writer"]
    allowed, fixed, blocked, flagged = sorted(_decisions(exporter), key=lambda s: s.start_time)
    for span in (allowed, fixed, blocked, flagged):
        assert span.context.trace_id == agent_span.context.trace_id
        assert span.parent.span_id == agent_span.context.span_id
        assert span.attributes["plyra.span.kind"] == "GUARD"
        assert span.attributes["openinference.span.kind"] == "GUARDRAIL"
    assert (allowed.attributes["guard.action"], allowed.attributes["guard.triggered"]) == (
        "allow",
        False,
    )
    assert allowed.attributes["guard.policy"] == "chat-out"
    assert fixed.attributes["guard.action"] == "modify"
    assert fixed.attributes["guard.policy"] == "test/no-secret"
    assert blocked.attributes["guard.action"] == "block"
    assert blocked.attributes["guard.triggered"] is True

    (said,) = json.loads(fixed.attributes["guard.details"])["validators"]
    assert said == {
        "validator": "test/no-secret",
        "outcome": "fail",
        "on_fail": "fix",
        "action": "modify",
        "error": "mentions a secret",
    }
    assert flagged.attributes["guard.action"] == "flag"  # noop: recorded, let through
    details = json.loads(flagged.attributes["guard.details"])
    by_validator = {v["validator"]: v["action"] for v in details["validators"]}
    assert by_validator == {"test/no-secret": "flag", "test/short": "allow"}

    # One decision per Guard call: validators and steps are not counted as guards again.
    guard_kinds = [
        s for s in exporter.get_finished_spans() if s.attributes.get("plyra.span.kind") == "GUARD"
    ]
    assert len(guard_kinds) == 4
    validators = [s for s in exporter.get_finished_spans() if s.name.endswith(".validate")]
    assert validators and {s.attributes["plyra.span.kind"] for s in validators} == {"EVALUATOR"}
