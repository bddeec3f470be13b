"""LLM cost at ingest with genai-prices; an unpriceable model is ``None`` (unpriced), never $0."""

from __future__ import annotations

import functools
import logging
import threading
from typing import Final

_log = logging.getLogger(__name__)

_PROVIDER_PREFIXES: Final = (
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("claude", "anthropic"),
    ("gemini", "google"),
    ("mistral", "mistral"),
    ("command", "cohere"),
    ("grok", "x-ai"),
    ("deepseek", "deepseek"),
)


def infer_provider(model: str) -> str | None:
    """The provider a bare model name belongs to, when its prefix makes that obvious."""
    lowered = model.lower()
    for prefix, provider in _PROVIDER_PREFIXES:
        if lowered.startswith(prefix):
            return provider
    return None


_UNKNOWN_MAX = 4_096
"""Unknown (model, provider) pairs remembered at most (forgetting one costs only a lookup)."""


class Pricer:
    """Prices token usage; lookups are cached per (model, provider) and per exact usage."""

    def __init__(self) -> None:
        self._unknown: set[tuple[str, str | None]] = set()
        self._lock = threading.Lock()
        self.price = functools.lru_cache(maxsize=16_384)(self._price)

    def _price(
        self,
        model: str,
        provider: str | None,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
    ) -> float | None:
        """USD for one call, or None when genai-prices does not know the model.

        ``input_tokens`` must include cached tokens, as genai-prices expects.
        """
        key = (model.lower(), provider.lower() if provider else None)
        if key in self._unknown:
            return None
        try:
            import genai_prices

            usage = genai_prices.Usage(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read_tokens or None,
                cache_write_tokens=cache_write_tokens or None,
            )
            try:
                result = genai_prices.calc_price(usage, model, provider_id=key[1])
            except LookupError:
                inferred = infer_provider(model)
                if key[1] is None or inferred is None or inferred == key[1]:
                    raise
                result = genai_prices.calc_price(usage, model, provider_id=inferred)
        except LookupError:
            with self._lock:
                if len(self._unknown) >= _UNKNOWN_MAX:  # senders choose model names: stay bounded
                    self._unknown.clear()
                self._unknown.add(key)
            return None
        except Exception:
            _log.warning("could not price %r/%r; left unpriced", model, provider, exc_info=True)
            return None
        return float(result.total_price)

    def warm(self) -> None:
        """Load the price snapshot now, so the first request does not pay for it."""
        self._price("gpt-4o", "openai", 1, 1, 0, 0)
