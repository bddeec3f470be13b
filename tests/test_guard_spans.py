"""Guard libraries' own spans as GUARD decisions: the mapping, including values it does not know."""

from __future__ import annotations

import json

from plyra_trace.integrations.guardrails import guard_call_attributes, validator_outcome


def _validator(name: str, outcome: str, on_fail: str) -> dict[str, str]:
    return {
        "type": "guardrails/guard/step/validator",
        "validator.name": name,
        "validator.on_fail": on_fail,
        "output.value": json.dumps({"outcome": outcome, "error_message": "no"}),
    }


def test_an_unknown_on_fail_is_recorded_lower_cased_and_the_most_severe_action_decides():
    said = [
        validator_outcome(_validator("a", "fail", "OnFailAction.QUARANTINE")),
        validator_outcome(_validator("b", "fail", "OnFailAction.FIX")),
        validator_outcome(_validator("c", "pass", "OnFailAction.EXCEPTION")),
    ]
    assert [s["action"] for s in said] == ["quarantine", "modify", "allow"]
    attributes = guard_call_attributes({"guard.name": "g"}, said)
    assert (attributes["guard.action"], attributes["guard.policy"]) == ("modify", "b")
    assert attributes["guard.provider"] == "guardrails-ai"


def test_a_validator_that_raised_has_no_outcome_and_a_guard_without_validators_allows():
    raised = validator_outcome({"validator.name": "x", "validator.on_fail": "exception"})
    assert (raised["outcome"], raised["action"]) == ("error", "block")
    attributes = guard_call_attributes({"guard.name": "g"}, [])
    assert (attributes["guard.action"], attributes["guard.triggered"]) == ("allow", False)
    assert attributes["guard.policy"] == "g"
