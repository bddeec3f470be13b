"""Agent-aware tail sampling: keep every trace that matters whole, a share of the rest, and every
trace's summary, cost and tokens exactly.

Store-independent: the policy (:mod:`.policy`), the pure decision (:mod:`.decide`), the skeleton
that keeps a dropped trace's summary derivable (:mod:`.skeleton`) and the decider loop
(:mod:`.decider`) that asks a store for due traces and hands it the decisions.
"""

from __future__ import annotations

from plyra_trace.collector.sampling.decide import (
    Decision,
    TraceFacts,
    decide,
    decide_batch,
    in_rate,
    span_marks,
)
from plyra_trace.collector.sampling.policy import PolicyError, SamplingPolicy, make_policy

__all__ = [
    "Decision",
    "PolicyError",
    "SamplingPolicy",
    "TraceFacts",
    "decide",
    "decide_batch",
    "in_rate",
    "make_policy",
    "span_marks",
]
