"""Integrations: framework hooks that carry plyra's context, and readings of frameworks' spans.

The core knows no framework; the modules below add what they know about one to it when imported:
their agent rules and span readers (guard libraries) to ``AutoSpanProcessor`` and LangChain's
bridge to the instrumentor registry.
The package is imported with ``plyra_trace`` (``PlyraMiddleware`` lives here), so they are in
place before any span ends. None of them imports its framework at import time.
"""

from plyra_trace.integrations import ag2, crewai, guardrails, langchain, nemo_guardrails

__all__ = ["ag2", "crewai", "guardrails", "langchain", "nemo_guardrails"]
