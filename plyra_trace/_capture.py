"""Turn function inputs and outputs into bounded, redacted span attribute values.

Serialisation never raises and never costs more than the configured size: long strings are cut
before encoding, anything JSON cannot encode falls back to a safe repr, secrets are redacted.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from plyra_trace import _semconv as sc

Redactor = Callable[[str, Any], Any]

REDACTED: Final = "[REDACTED]"
DEFAULT_MAX_CHARS: Final = 32_768
_MAX_DEPTH: Final = 6
_MAX_ITEMS: Final = 1_000

DEFAULT_REDACT_KEYS: Final = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "client_secret",
        "api_key",
        "apikey",
        "x_api_key",
        "authorization",
        "proxy_authorization",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "private_key",
        "cookie",
        "set_cookie",
        "session_token",
        "credentials",
    }
)


def _normalise_key(key: str) -> str:
    return key.lower().replace("-", "_")


@dataclasses.dataclass(slots=True)
class CaptureSettings:
    """Process-wide capture policy, set by ``init()``."""

    enabled: bool = True
    max_chars: int = DEFAULT_MAX_CHARS
    redact_keys: frozenset[str] = DEFAULT_REDACT_KEYS
    redactor: Redactor | None = None
    _verdicts: dict[str, bool] = dataclasses.field(default_factory=dict)

    def configure(
        self,
        enabled: bool,
        max_chars: int,
        redact_keys: Iterable[str] | None,
        redactor: Redactor | None,
    ) -> None:
        if max_chars < 64:
            raise ValueError("max_io_chars must be at least 64")
        self.enabled = enabled
        self.max_chars = max_chars
        extra = {_normalise_key(k) for k in (redact_keys or ())}
        self.redact_keys = DEFAULT_REDACT_KEYS | extra
        self.redactor = redactor
        self._verdicts = {}

    def is_secret(self, key: str) -> bool:
        known = self._verdicts.get(key)
        if known is None:
            known = _normalise_key(key) in self.redact_keys
            if len(self._verdicts) < 4096:  # bounded: keys are usually parameter names
                self._verdicts[key] = known
        return known


settings = CaptureSettings()


def _fallback(value: Any) -> Any:
    """JSON's ``default=``: containers and models we know, else a safe repr."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:
            pass
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return safe_repr(value)


def safe_repr(value: Any) -> str:
    """``repr(value)`` bounded in size, or a placeholder if repr itself fails."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__qualname__} object>"
    limit = settings.max_chars
    return text if len(text) <= limit else text[:limit] + "…"


def _scrub(value: Any, depth: int = 0) -> Any:
    """Redact secret keys and cut long strings inside nested containers."""
    limit = settings.max_chars
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit]
    if depth >= _MAX_DEPTH:
        return value if isinstance(value, int | float | bool | None) else safe_repr(value)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        redactor = settings.redactor
        for index, (key, item) in enumerate(value.items()):
            if index >= _MAX_ITEMS:
                out["…"] = f"{len(value) - _MAX_ITEMS} more"
                break
            name = key if isinstance(key, str) else str(key)
            if settings.is_secret(name):
                out[name] = REDACTED
                continue
            item = _scrub(item, depth + 1)
            out[name] = redactor(name, item) if redactor is not None else item
        return out
    if isinstance(value, list | tuple):
        items = [_scrub(item, depth + 1) for item in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            items.append(f"… {len(value) - _MAX_ITEMS} more")
        return items
    return value


_SCALARS: Final = (int, float, bool, type(None))


def _needs_scrub(value: Any) -> bool:
    """Whether ``value`` may hold a secret key or an overlong string (cheap checks first)."""
    if isinstance(value, str):
        return len(value) > settings.max_chars
    if isinstance(value, dict):
        limit = settings.max_chars
        return not all(
            isinstance(key, str)
            and not settings.is_secret(key)
            and (type(item) in _SCALARS or (type(item) is str and len(item) <= limit))
            for key, item in value.items()
        )
    return isinstance(value, Mapping | list | tuple)


_ENCODER: Final = json.JSONEncoder(default=_fallback, ensure_ascii=False)  # built once: hot path


def _encode(value: Any) -> str:
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):
        return _ENCODER.encode(safe_repr(value))


def _bounded(text: str) -> tuple[str, bool]:
    limit = settings.max_chars
    if len(text) <= limit:
        return text, False
    return f"{text[:limit]}…[truncated {len(text) - limit} chars]", True


def encode_input(arguments: dict[str, Any]) -> tuple[str, str]:
    """Arguments keyed by parameter name as (value, mime type) for ``input.value``."""
    redactor = settings.redactor
    for key, value in arguments.items():
        if settings.is_secret(key):
            arguments[key] = REDACTED
        elif _needs_scrub(value):
            arguments[key] = _scrub(value)
        if redactor is not None and arguments[key] is not REDACTED:
            arguments[key] = redactor(key, arguments[key])
    text, truncated = _bounded(_encode(arguments))
    return text, sc.MIME_TEXT if truncated else sc.MIME_JSON


def encode_output(value: Any) -> tuple[str, str]:
    """A return value as (value, mime type) for ``output.value``; strings stay plain text."""
    if isinstance(value, str):
        return _bounded(value)[0], sc.MIME_TEXT
    if _needs_scrub(value):
        value = _scrub(value)
    text, truncated = _bounded(_encode(value))
    return text, sc.MIME_TEXT if truncated else sc.MIME_JSON


def encode_json(value: Any) -> str:
    """Any value as bounded JSON text (for attributes such as ``guard.details``)."""
    if _needs_scrub(value):
        value = _scrub(value)
    return _bounded(_encode(value))[0]
