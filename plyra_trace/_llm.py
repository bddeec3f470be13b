"""LLM token usage and cost: read usage from provider responses, price it with genai-prices.

Usage is taken from OpenAI (chat completions and responses) and Anthropic responses, as objects
or dicts. Cost is priced from the shared genai-prices data; a model it does not know gets no cost
attribute at all, never a guessed one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plyra_trace import _semconv as sc
from plyra_trace._safety import log_once


@dataclass(frozen=True, slots=True)
class LLMUsage:
    """Token counts for one model call; ``input_tokens`` includes cached input tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _get(source: Any, name: str) -> Any:
    if source is None:
        return None
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def extract_usage(response: Any) -> LLMUsage | None:
    """Token usage from an OpenAI- or Anthropic-shaped response (object or dict), else None."""
    usage = _get(response, "usage")
    if usage is None:
        return None
    if _get(usage, "prompt_tokens") is not None:  # OpenAI chat completions
        details = _get(usage, "prompt_tokens_details")
        return LLMUsage(
            input_tokens=_int(_get(usage, "prompt_tokens")),
            output_tokens=_int(_get(usage, "completion_tokens")),
            cache_read_tokens=_int(_get(details, "cached_tokens")),
            reasoning_tokens=_int(
                _get(_get(usage, "completion_tokens_details"), "reasoning_tokens")
            ),
        )
    if _get(usage, "input_tokens") is None:
        return None
    cache_read = _int(_get(usage, "cache_read_input_tokens"))
    cache_write = _int(_get(usage, "cache_creation_input_tokens"))
    if cache_read or cache_write or _get(usage, "cache_read_input_tokens") is not None:
        # Anthropic: input_tokens excludes cached tokens.
        return LLMUsage(
            input_tokens=_int(_get(usage, "input_tokens")) + cache_read + cache_write,
            output_tokens=_int(_get(usage, "output_tokens")),
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )
    # OpenAI responses API: input_tokens includes cached tokens.
    return LLMUsage(
        input_tokens=_int(_get(usage, "input_tokens")),
        output_tokens=_int(_get(usage, "output_tokens")),
        cache_read_tokens=_int(_get(_get(usage, "input_tokens_details"), "cached_tokens")),
        reasoning_tokens=_int(_get(_get(usage, "output_tokens_details"), "reasoning_tokens")),
    )


def response_model(response: Any) -> str | None:
    model = _get(response, "model")
    return model if isinstance(model, str) and model else None


def infer_provider(model: str | None) -> str | None:
    """A provider id for well-known model families, when the caller did not name one."""
    if not model:
        return None
    name = model.lower()
    if name.startswith(("gpt-", "o1", "o3", "o4", "chatgpt", "text-embedding")):
        return "openai"
    if name.startswith("claude"):
        return "anthropic"
    if name.startswith("gemini"):
        return "google"
    if name.startswith(("mistral", "mixtral", "codestral")):
        return "mistral"
    return None


def model_attributes(model: str | None, provider: str | None) -> dict[str, str]:
    """Model and provider attributes, OpenInference and gen_ai names side by side."""
    attributes: dict[str, str] = {}
    if model:
        attributes[sc.LLM_MODEL_NAME] = model
        attributes[sc.GEN_AI_REQUEST_MODEL] = model
    if provider:
        attributes[sc.LLM_PROVIDER] = provider
        attributes[sc.GEN_AI_PROVIDER] = provider
        attributes[sc.GEN_AI_SYSTEM] = provider
    return attributes


def usage_attributes(usage: LLMUsage) -> dict[str, int]:
    """OpenInference and gen_ai token attributes for ``usage``."""
    attributes = {
        sc.LLM_TOKENS_PROMPT: usage.input_tokens,
        sc.LLM_TOKENS_COMPLETION: usage.output_tokens,
        sc.LLM_TOKENS_TOTAL: usage.total_tokens,
        sc.GEN_AI_INPUT_TOKENS: usage.input_tokens,
        sc.GEN_AI_OUTPUT_TOKENS: usage.output_tokens,
    }
    if usage.cache_read_tokens:
        attributes[sc.LLM_TOKENS_CACHE_READ] = usage.cache_read_tokens
        attributes[sc.GEN_AI_CACHE_READ_TOKENS] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        attributes[sc.LLM_TOKENS_CACHE_WRITE] = usage.cache_write_tokens
        attributes[sc.GEN_AI_CACHE_WRITE_TOKENS] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        attributes[sc.LLM_TOKENS_REASONING] = usage.reasoning_tokens
    return attributes


def cost_attributes(usage: LLMUsage, model: str | None, provider: str | None) -> dict[str, float]:
    """``llm.cost.*`` in USD from genai-prices; empty when the model cannot be priced."""
    if not model:
        return {}
    try:
        import genai_prices

        priced = genai_prices.Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        )
        try:
            price = genai_prices.calc_price(priced, model, provider_id=provider)
        except LookupError:
            if provider is None:
                return {}
            price = genai_prices.calc_price(priced, model)
    except LookupError:
        return {}
    except Exception:
        log_once("price", "plyra_trace: could not price an LLM call; its cost is left unset")
        return {}
    return {
        sc.LLM_COST_PROMPT: float(price.input_price),
        sc.LLM_COST_COMPLETION: float(price.output_price),
        sc.LLM_COST_TOTAL: float(price.total_price),
    }


def llm_result_attributes(response: Any, model: str | None, provider: str | None) -> dict[str, Any]:
    """Everything an ``@llm`` span learns from its return value: model, usage and cost."""
    attributes: dict[str, Any] = {}
    returned_model = response_model(response)
    if returned_model is not None:
        attributes[sc.GEN_AI_RESPONSE_MODEL] = returned_model
    if model is None and returned_model is not None:
        model = returned_model
        attributes[sc.LLM_MODEL_NAME] = model
    usage = extract_usage(response)
    if usage is None:
        return attributes
    attributes.update(usage_attributes(usage))
    attributes.update(cost_attributes(usage, model, provider or infer_provider(model)))
    return attributes


_warming: threading.Thread | None = None


def _finish_warming_before_fork() -> None:
    """A fork while the price table loads would leave its import lock held forever in the child
    (a prefork worker that deadlocks on its first priced call); let the load finish first."""
    thread = _warming
    if thread is not None and thread.is_alive():
        thread.join(timeout=10)


def warm_prices() -> None:
    """Load the price table off the request path, so the first priced call is not slow."""
    global _warming

    def _load() -> None:
        try:
            import genai_prices

            genai_prices.calc_price(genai_prices.Usage(input_tokens=1), "gpt-4o")
        except Exception:
            pass

    if _warming is None and hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_finish_warming_before_fork)
    if _warming is not None and _warming.is_alive():
        return
    _warming = threading.Thread(target=_load, name="plyra-prices-warmup", daemon=True)
    _warming.start()
