"""The sampling policy: rates and thresholds from `serve` flags or a YAML file, checked at start.

Every invalid value raises :class:`PolicyError` naming the field, so ``serve`` stops with a message
the operator can act on instead of sampling with a setting nobody meant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

DEFAULT_DECISION_WAIT_S: Final = 10.0
_RATE_SCOPES: Final = ("projects", "services", "agents")
FLAGS: Final = {
    "sample_rate": "--sample-rate",
    "keep_cost_above": "--keep-cost-above",
    "keep_slower_than_ms": "--keep-slower-than",
    "decision_wait": "--decision-wait",
}
"""The ``serve`` flag for each setting (the YAML file spells them as the keys)."""
_FILE_KEYS: Final = (
    "sample_rate",
    "keep_cost_above",
    "keep_slower_than_ms",
    "decision_wait",
    "rates",
)


class PolicyError(ValueError):
    """A sampling setting that cannot be used; the message starts with the field's name."""


@dataclass(frozen=True, slots=True)
class SamplingPolicy:
    """Which traces keep their spans: interesting ones always, ordinary ones at a rate."""

    sample_rate: float = 1.0
    """Share of ordinary traces whose spans are kept (1.0 = sampling off)."""
    keep_cost_above: float | None = None
    """Traces costing more than this (USD) are kept whole."""
    keep_slower_than_ms: float | None = None
    """Traces lasting longer than this (milliseconds) are kept whole."""
    decision_wait_s: float = DEFAULT_DECISION_WAIT_S
    """Quiet time after a trace's last span before it is decided."""
    rates: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Rates per ``projects``, ``services`` or ``agents`` name, overriding ``sample_rate``."""

    @property
    def active(self) -> bool:
        """True when some ordinary trace may lose its spans."""
        return self.sample_rate < 1.0 or any(
            rate < 1.0 for scope in self.rates.values() for rate in scope.values()
        )

    def rate_for(self, project: str, services: tuple[str, ...], agents: tuple[str, ...]) -> float:
        """The rate for an ordinary trace: the highest rate of the rules that name its project, a
        service or an agent it touched, else ``sample_rate``."""
        matched = [
            scope[name]
            for scope, names in (
                (self.rates.get("projects", {}), (project,)),
                (self.rates.get("services", {}), services),
                (self.rates.get("agents", {}), agents),
            )
            for name in names
            if name in scope
        ]
        return max(matched) if matched else self.sample_rate

    def describe(self) -> dict[str, Any]:
        """The policy as JSON (what GET /api/v1/sampling shows)."""
        return {
            "active": self.active,
            "sample_rate": self.sample_rate,
            "keep_cost_above": self.keep_cost_above,
            "keep_slower_than_ms": self.keep_slower_than_ms,
            "decision_wait_s": self.decision_wait_s,
            "rates": {scope: dict(names) for scope, names in self.rates.items()},
        }


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyError(f"{name} must be a number, not {value!r}")
    return float(value)


def _rate(name: str, value: Any) -> float:
    rate = _number(name, value)
    if not 0.0 <= rate <= 1.0:
        raise PolicyError(f"{name} must be between 0 and 1, not {value!r}")
    return rate


def _at_least_zero(name: str, value: Any) -> float | None:
    if value is None:
        return None
    number = _number(name, value)
    if number < 0:
        raise PolicyError(f"{name} must be 0 or more, not {value!r}")
    return number


def _rates(name: str, value: Any) -> dict[str, dict[str, float]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError(f"{name} must map projects/services/agents to rates")
    out: dict[str, dict[str, float]] = {}
    for scope, names in value.items():
        if scope not in _RATE_SCOPES:
            raise PolicyError(f"{name}.{scope} is unknown (use {', '.join(_RATE_SCOPES)})")
        if not isinstance(names, Mapping):
            raise PolicyError(f"{name}.{scope} must map names to rates")
        out[scope] = {str(key): _rate(f"{name}.{scope}.{key}", v) for key, v in names.items()}
    return out


def make_policy(
    *,
    sample_rate: Any = 1.0,
    keep_cost_above: Any = None,
    keep_slower_than_ms: Any = None,
    decision_wait: Any = DEFAULT_DECISION_WAIT_S,
    rates: Any = None,
    names: Mapping[str, str] | None = None,
) -> SamplingPolicy:
    """A checked policy; ``names`` maps each setting to how the user spelled it (a flag)."""
    spelled = dict(names or {})

    def name(key: str) -> str:
        return spelled.get(key, key)

    wait = _at_least_zero(name("decision_wait"), decision_wait)
    return SamplingPolicy(
        sample_rate=_rate(name("sample_rate"), sample_rate),
        keep_cost_above=_at_least_zero(name("keep_cost_above"), keep_cost_above),
        keep_slower_than_ms=_at_least_zero(name("keep_slower_than_ms"), keep_slower_than_ms),
        decision_wait_s=DEFAULT_DECISION_WAIT_S if wait is None else wait,
        rates=_rates(name("rates"), rates),
    )


def read_policy_file(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML sampling file (unchecked values, checked keys)."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(f"--sampling: cannot read {path}: {error.strerror}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyError(f"--sampling: {path} is not valid YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise PolicyError(f"--sampling: {path} must hold a mapping of settings")
    for key in loaded:
        if key not in _FILE_KEYS:
            raise PolicyError(f"{key} is not a sampling setting (use {', '.join(_FILE_KEYS)})")
    return loaded


def policy_from_settings(file: str | None, flags: Mapping[str, Any]) -> SamplingPolicy:
    """The policy from an optional YAML file, with flags given on the command line winning.

    ``flags`` maps setting names to values (None = not given) as ``serve`` parsed them.
    """
    settings = read_policy_file(file) if file else {}
    names = {key: f"{file}: {key}" for key in settings} if file else {}
    for key, value in flags.items():
        if value is not None:
            settings[key] = value
            names[key] = FLAGS[key]
    return make_policy(**settings, names=names)


__all__ = [
    "FLAGS",
    "PolicyError",
    "SamplingPolicy",
    "make_policy",
    "policy_from_settings",
    "read_policy_file",
]
