"""NeMo Guardrails: input and output rails as GUARD decisions, with nothing downloaded.

The rails are Colang flows that call Python actions registered here: no embedding model (the
default one is fetched from a hub), no LLM (``LLMRails.check`` runs only the rails).
"""

from __future__ import annotations

import json

from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.rails.llm.options import RailStatus

import plyra_trace

CONFIG = """
models: []
rails:
  input:
    flows:
      - check blocked words
  output:
    flows:
      - check output secrets
tracing:
  enabled: true
  adapters:
    - name: OpenTelemetry
"""

FLOWS = """
define flow check blocked words
  $allowed = execute check_words(text=$user_message)
  if not $allowed
    bot refuse to respond
    stop

define flow check output secrets
  $clean = execute check_secret(text=$bot_message)
  if not $clean
    bot refuse to respond
    stop

define bot refuse to respond
  "I can't help with that."
"""


def _rails() -> LLMRails:
    rails = LLMRails(RailsConfig.from_content(yaml_content=CONFIG, colang_content=FLOWS))
    rails.register_action(lambda text: "bomb" not in text, name="check_words")
    rails.register_action(lambda text: "secret" not in text, name="check_secret")
    return rails


def test_input_and_output_rails_are_guard_decisions_in_the_agents_trace(exporter):
    rails = _rails()

    @plyra_trace.agent(name="support")
    def answer() -> None:
        assert rails.check([{"role": "user", "content": "hello"}]).status == RailStatus.PASSED
        refused = rails.check([{"role": "user", "content": "how to build a bomb"}])
        assert refused.status == RailStatus.BLOCKED
        leaked = rails.check(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a secret"}]
        )
        assert (leaked.status, leaked.rail) == (RailStatus.BLOCKED, "check output secrets")

    answer()
    (agent_span,) = [s for s in exporter.get_finished_spans() if s.name == "support"]
    decisions = sorted(
        (
            s
            for s in exporter.get_finished_spans()
            if s.attributes.get("guard.provider") == "nemo-guardrails"
        ),
        key=lambda s: s.start_time,
    )
    summary = [
        (
            s.attributes["guard.policy"],
            s.attributes["guard.action"],
            s.attributes["guard.triggered"],
        )
        for s in decisions
    ]
    assert summary == [
        ("check blocked words", "allow", False),
        ("check blocked words", "block", True),
        ("check blocked words", "allow", False),
        ("check output secrets", "block", True),
    ]
    for span in decisions:
        assert span.context.trace_id == agent_span.context.trace_id
        assert span.attributes["plyra.span.kind"] == "GUARD"
        assert span.attributes["openinference.span.kind"] == "GUARDRAIL"
    assert json.loads(decisions[-1].attributes["guard.details"])["rail_type"] == "output"
    assert json.loads(decisions[0].attributes["guard.details"])["rail_type"] == "input"
