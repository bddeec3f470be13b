"""What every demo service shares: tracing set-up and the language model the agents call.

The model is a deterministic fake that answers like an OpenAI-compatible API, with realistic token
usage under real model names (so genai-prices can price it) and a little latency. Set
``PLYRA_DEMO_LLM_URL`` (and ``PLYRA_DEMO_LLM_KEY``) to call a real OpenAI-compatible endpoint.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from typing import Any

import plyra_trace

PROJECT = "plyra-demo"


def init_tracing(service: str) -> plyra_trace.PlyraTrace:
    """Export this service's spans to the demo collector (``PLYRA_ENDPOINT``)."""
    return plyra_trace.init(
        project=PROJECT,
        service_name=service,
        endpoint=os.environ.get("PLYRA_ENDPOINT", "http://127.0.0.1:4318"),
        console=False,
        schedule_delay_millis=200,
    )


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _fake_completion(model: str, system: str, prompt: str) -> dict[str, Any]:
    seed = int(hashlib.sha256(f"{model}|{prompt}".encode()).hexdigest()[:8], 16)
    rng = random.Random(seed)
    time.sleep(random.uniform(0.02, 0.12))
    topic = " ".join(prompt.split()[:8])
    sentences = [
        f"Regarding {topic}, the evidence points in a clear direction.",
        "Three sources agree on the main facts and differ on the numbers.",
        "The strongest signal comes from recent primary data.",
        "A careful reader should treat the forecasts with caution.",
    ]
    text = " ".join(rng.sample(sentences, k=rng.randint(2, 4)))
    prompt_tokens = int((_words(system) + _words(prompt)) * 1.35) + 12
    return {
        "id": f"chatcmpl-{seed:08x}",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": int(_words(text) * 1.3),
            "prompt_tokens_details": {"cached_tokens": (prompt_tokens // 64) * 32},
        },
    }


def _real_completion(model: str, system: str, prompt: str) -> dict[str, Any]:
    import httpx

    response = httpx.post(
        os.environ["PLYRA_DEMO_LLM_URL"].rstrip("/") + "/chat/completions",
        headers={"authorization": f"Bearer {os.environ.get('PLYRA_DEMO_LLM_KEY', '')}"},
        json={
            "model": os.environ.get("PLYRA_DEMO_LLM_MODEL", model),
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": prompt},
            ],
        },
        timeout=60,
    )
    response.raise_for_status()
    return dict(response.json())


def complete(model: str, system: str, prompt: str) -> dict[str, Any]:
    """One chat completion: the fake model, or a real endpoint when configured."""
    if os.environ.get("PLYRA_DEMO_LLM_URL"):
        return _real_completion(model, system, prompt)
    return _fake_completion(model, system, prompt)


def text_of(completion: dict[str, Any]) -> str:
    return str(completion["choices"][0]["message"]["content"])
