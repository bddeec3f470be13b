"""LangChain and LangGraph: spans of OpenInference's LangChain instrumentor nested and read as
agents.

- The bridge (installed with ``plyra_trace.instrument("langchain")``) makes a LangChain run's span
  current while the run's own code executes, so spans started inside a run nest under it.
- ``agent_rule`` (used by ``AutoSpanProcessor``) turns a LangGraph node's span into that agent's
  AGENT span, with the in-process handoff from the node that ran before it.

Importing this module (the package does) adds both.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

from plyra_trace import _semconv as sc
from plyra_trace._auto import Finished, add_agent_rule, agent_attributes, in_process_handoff
from plyra_trace._instrument import add_bridge
from plyra_trace._safety import log_once

__all__ = ["agent_rule", "install", "remove"]

_LANGGRAPH_NODE: Final = "langgraph_node"
_FRAMEWORK: Final = "langgraph"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class _Bridge:
    """Makes a LangChain run's span current while the run's own code executes.

    OpenInference's LangChain tracer parents spans by run id and never makes them current, so
    spans started inside a run (an OpenAI call in a LangGraph node or in a chat model, a plyra
    ``@tool``) would hang off whatever was current outside the graph. Two hooks fix that:
    LangChain and LangGraph run child code in a *copied* ``contextvars.Context`` prepared by
    ``_set_config_context``; attaching the run's span there ends with that copy. A chat model's
    ``_generate_with_cache`` gets the span attached and detached around the call.
    """

    _CONFIG_MODULES: Final = ("langchain_core.runnables.config", "langgraph._internal._runnable")
    _CHAT_METHODS: Final = ("_generate_with_cache", "_agenerate_with_cache")

    def __init__(self) -> None:
        self._instrumentor: Any = None
        self._originals: list[tuple[Any, str, Any]] = []

    def install(self, instrumentor: Any) -> None:
        self._instrumentor = instrumentor
        if self._originals:
            return
        try:
            for module_name in self._CONFIG_MODULES:
                if not _importable(module_name):  # langgraph is optional
                    continue
                module = importlib.import_module(module_name)
                self._patch(module, "_set_config_context", self._config_hook)
            from langchain_core.language_models.chat_models import BaseChatModel

            self._patch(BaseChatModel, "_generate_with_cache", self._chat_hook)
            self._patch(BaseChatModel, "_agenerate_with_cache", self._async_chat_hook)
        except Exception:
            log_once("langchain-bridge", "plyra_trace: LangChain spans will not nest calls in runs")

    def remove(self) -> None:
        for owner, attribute, original in reversed(self._originals):
            setattr(owner, attribute, original)
        self._originals.clear()
        self._instrumentor = None

    def _patch(self, owner: Any, attribute: str, hook: Callable[[Any], Any]) -> None:
        original = getattr(owner, attribute, None)
        if original is None:
            return
        setattr(owner, attribute, hook(original))
        self._originals.append((owner, attribute, original))

    def _span_of(self, run_id: Any) -> Any:
        instrumentor = self._instrumentor
        if instrumentor is None or run_id is None:
            return None
        span = instrumentor.get_span(run_id)
        return span if span is not None and span.is_recording() else None

    def _config_hook(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def _set_config_context(config: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(config, *args, **kwargs)
            try:
                callbacks = config.get("callbacks") if isinstance(config, Mapping) else None
                span = self._span_of(getattr(callbacks, "parent_run_id", None))
                if span is not None:  # runs inside a copied Context: never detached, never leaks
                    otel_context.attach(trace.set_span_in_context(span))
            except Exception:
                log_once("langchain-config", "plyra_trace: could not nest a LangChain run")
            return result

        return _set_config_context

    def _chat_hook(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def _generate_with_cache(model: Any, *args: Any, **kwargs: Any) -> Any:
            token = self._attach(kwargs.get("run_manager"))
            try:
                return original(model, *args, **kwargs)
            finally:
                if token is not None:
                    otel_context.detach(token)

        return _generate_with_cache

    def _async_chat_hook(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        async def _agenerate_with_cache(model: Any, *args: Any, **kwargs: Any) -> Any:
            token = self._attach(kwargs.get("run_manager"))
            try:
                return await original(model, *args, **kwargs)
            finally:
                if token is not None:
                    otel_context.detach(token)

        return _agenerate_with_cache

    def _attach(self, run_manager: Any) -> Token[otel_context.Context] | None:
        try:
            span = self._span_of(getattr(run_manager, "run_id", None))
            return None if span is None else otel_context.attach(trace.set_span_in_context(span))
        except Exception:
            log_once("langchain-chat", "plyra_trace: could not nest a LangChain model call")
            return None


_bridge = _Bridge()


def install(instrumentor: Any) -> None:
    """Nest spans started inside LangChain runs under the runs' spans (``instrumentor`` is the
    OpenInference LangChain instrumentor that knows them)."""
    _bridge.install(instrumentor)


def remove() -> None:
    """Undo ``install``."""
    _bridge.remove()


def _langgraph_node(span: ReadableSpan, attributes: Mapping[str, Any]) -> str | None:
    """The LangGraph node a LangChain span runs, when the span is that node's own span."""
    metadata = attributes.get(sc.METADATA)
    if not isinstance(metadata, str) or _LANGGRAPH_NODE not in metadata:
        return None
    try:
        node = json.loads(metadata).get(_LANGGRAPH_NODE)
    except (ValueError, AttributeError):
        return None
    return node if isinstance(node, str) and node == span.name else None


def agent_rule(finished: Finished) -> dict[str, Any] | None:
    """The AGENT attributes of a LangGraph node that called a model or is an agent itself."""
    entry = finished.entry
    node = _langgraph_node(finished.span, finished.attributes)
    if node is None or not (entry.has_llm or finished.kind == sc.SpanKind.AGENT.value):
        return None
    if entry.parent is not None:
        entry.parent.last_agent = node
    return {**agent_attributes(node, _FRAMEWORK), **in_process_handoff(entry.prev_agent, node)}


add_agent_rule("openinference.instrumentation.langchain", agent_rule)
add_bridge("langchain", install, remove)
