"""GuardResult: the decision of a policy check, recorded as ``guard.*`` span attributes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from plyra_trace import _semconv as sc
from plyra_trace._capture import encode_json

GUARD_ACTIONS: Final = frozenset({"allow", "block", "redact", "flag", "modify"})


@dataclass(frozen=True, slots=True)
class GuardResult:
    """What a guard decided: ``action`` is one of allow, block, redact, flag, modify.

    A block is a decision, not an error: the span's status stays OK.
    """

    policy: str
    action: str
    triggered: bool
    confidence: float = 1.0
    details: Mapping[str, Any] = field(default_factory=dict)
    provider: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.policy, str) or not self.policy:
            raise ValueError("GuardResult.policy must be a non-empty string")
        if self.action not in GUARD_ACTIONS:
            allowed = ", ".join(sorted(GUARD_ACTIONS))
            raise ValueError(f"GuardResult.action must be one of {allowed}, not {self.action!r}")
        if not isinstance(self.triggered, bool):
            raise ValueError(f"GuardResult.triggered must be a bool, not {self.triggered!r}")
        confidence = self.confidence
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, int | float)
            or math.isnan(confidence)
            or not 0.0 <= confidence <= 1.0
        ):
            raise ValueError(f"GuardResult.confidence must be in [0, 1], not {confidence!r}")
        if not isinstance(self.details, Mapping):
            raise ValueError("GuardResult.details must be a mapping")

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    def to_attributes(self) -> dict[str, Any]:
        """The ``guard.*`` attributes this result puts on its span."""
        return guard_attributes(
            self.policy, self.action, self.triggered, self.confidence, self.details, self.provider
        )


def guard_attributes(
    policy: str,
    action: str,
    triggered: bool,
    confidence: float,
    details: Mapping[str, Any],
    provider: str | None = None,
) -> dict[str, Any]:
    """The ``guard.*`` attributes of one decision.

    ``GuardResult`` validates before calling this; integrations call it directly because a
    library's verdict outside ``GUARD_ACTIONS`` is recorded as it is (lower-cased), not dropped.
    """
    attributes: dict[str, Any] = {
        sc.GUARD_POLICY: policy,
        sc.GUARD_ACTION: action,
        sc.GUARD_TRIGGERED: triggered,
        sc.GUARD_CONFIDENCE: float(confidence),
        sc.GUARD_DETAILS: encode_json(dict(details)),
    }
    if provider is not None:
        attributes[sc.GUARD_PROVIDER] = provider
    return attributes
