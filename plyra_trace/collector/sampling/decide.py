"""The sampling decision: a pure function of a trace's facts, its id and the policy.

Interesting traces (errors, guard decisions other than allow, failed handoffs, cost or latency
above a threshold, and the rest of a session that had one) keep their spans for a reason; ordinary
ones keep them when their trace id falls within the rate, by the same rule as OpenTelemetry's
``TraceIdRatioBased`` sampler, so replicas agree and the SDK's head ``sample_rate`` composes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from plyra_trace.collector.model import STATUS_ERROR
from plyra_trace.collector.sampling.policy import SamplingPolicy

ERROR: Final = "error"
HANDOFF_FAILED: Final = "handoff:failed"
COST: Final = "cost"
LATENCY: Final = "latency"
SESSION: Final = "session"
RATE: Final = "rate"
GUARD_PREFIX: Final = "guard:"
UNSTICKY: Final = frozenset({SESSION, RATE})
"""Reasons that do not make the rest of a session sticky (they are not about a problem)."""
_ORDER: Final = (ERROR, GUARD_PREFIX, HANDOFF_FAILED, COST, LATENCY, SESSION, RATE)


@dataclass(frozen=True, slots=True)
class TraceFacts:
    """What the decision reads about one trace: its summary and the marks of its spans."""

    trace_id: str
    marks: frozenset[str] = frozenset()
    """Span-level reasons seen so far (:func:`span_marks` of every span)."""
    cost: float | None = None
    duration_ns: int = 0
    session_id: str | None = None
    project: str = ""
    services: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    seen_ns: int = 0
    """When the store last stored a span of the trace (not read by the decision: a store applies
    a decision only if no span arrived since)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Keep the trace's spans or drop them (the summary always stays), and why it was kept."""

    trace_id: str
    keep: bool
    kept_because: tuple[str, ...] = ()
    seen_ns: int = 0
    """The :attr:`TraceFacts.seen_ns` the decision was taken on."""

    @property
    def sticky(self) -> bool:
        """Kept for a problem: the rest of its session is kept too."""
        return is_sticky(self.kept_because)


def span_marks(status: int, handoff_to: str | None, guard_action: object) -> set[str]:
    """Reasons one span gives to keep its trace: an error, a guard decision other than allow, a
    handoff whose receiving side failed (the span carrying the received handoff ended in error)."""
    marks: set[str] = set()
    if status == STATUS_ERROR:
        marks.add(ERROR)
        if handoff_to is not None:
            marks.add(HANDOFF_FAILED)
    if isinstance(guard_action, str) and guard_action and guard_action.lower() != "allow":
        marks.add(GUARD_PREFIX + guard_action.lower())
    return marks


def ordered(reasons: Iterable[str]) -> tuple[str, ...]:
    """Reasons in a stable order: errors first, then guards, handoffs, thresholds, session, rate."""

    def rank(reason: str) -> tuple[int, str]:
        for index, prefix in enumerate(_ORDER):
            if reason == prefix or (prefix.endswith(":") and reason.startswith(prefix)):
                return index, reason
        return len(_ORDER), reason

    return tuple(sorted(set(reasons), key=rank))


def in_rate(trace_id: str, rate: float) -> bool:
    """True when an ordinary trace falls within ``rate``: the low 64 bits of its id are below
    ``rate * 2**64``, exactly the test of OpenTelemetry's ``TraceIdRatioBased(rate)``."""
    if rate >= 1.0:
        return True
    low = int(trace_id[-16:], 16) & TraceIdRatioBased.TRACE_ID_LIMIT
    return low < TraceIdRatioBased.get_bound_for_rate(rate)


def reasons_of(facts: TraceFacts, policy: SamplingPolicy) -> tuple[str, ...]:
    """Why a trace is interesting on its own (empty for an ordinary trace)."""
    found = set(facts.marks)
    if (
        policy.keep_cost_above is not None
        and facts.cost is not None
        and facts.cost > policy.keep_cost_above
    ):
        found.add(COST)
    if (
        policy.keep_slower_than_ms is not None
        and facts.duration_ns > policy.keep_slower_than_ms * 1e6
    ):
        found.add(LATENCY)
    return ordered(found)


def is_sticky(kept_because: Iterable[str]) -> bool:
    """True when a kept trace was kept for a problem, which keeps the rest of its session too."""
    return any(reason not in UNSTICKY for reason in kept_because)


def decide(facts: TraceFacts, policy: SamplingPolicy, sticky_session: bool = False) -> Decision:
    """Decide one trace; ``sticky_session`` says its session already has a trace kept for a
    reason."""
    reasons = reasons_of(facts, policy)
    if not reasons and sticky_session and facts.session_id is not None:
        reasons = (SESSION,)
    if not reasons and in_rate(
        facts.trace_id, policy.rate_for(facts.project, facts.services, facts.agents)
    ):
        reasons = (RATE,)
    return Decision(facts.trace_id, bool(reasons), reasons, facts.seen_ns)


def decide_batch(
    batch: Sequence[TraceFacts], policy: SamplingPolicy, sticky_sessions: Iterable[str]
) -> list[Decision]:
    """Decide traces together: one kept for a reason makes its session sticky for the others of
    the batch too, as it would had it been decided first."""
    sticky = set(sticky_sessions)
    sticky.update(
        facts.session_id
        for facts in batch
        if facts.session_id is not None and reasons_of(facts, policy)
    )
    return [decide(facts, policy, facts.session_id in sticky) for facts in batch]


__all__ = [
    "Decision",
    "TraceFacts",
    "decide",
    "decide_batch",
    "in_rate",
    "is_sticky",
    "ordered",
    "reasons_of",
    "span_marks",
]
