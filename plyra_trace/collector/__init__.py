"""The plyra collector: OTLP in, normalised spans in embedded storage, a JSON/SSE API out.

Importing this package pulls in Starlette and uvicorn (the ``collector`` extra); the core SDK never
imports it. Start it with ``plyra-trace serve`` or :func:`plyra_trace.collector.app.create_app`.
"""

from __future__ import annotations

from plyra_trace.collector.config import CollectorConfig

__all__ = ["CollectorConfig"]
