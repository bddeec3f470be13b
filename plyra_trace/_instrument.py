"""Auto-instrumentation: OpenInference instrumentors, with their spans made first-class plyra spans.

``instrument("openai", ...)`` turns on the OpenInference instrumentor of each named target (all
importable ones when none is named); ``uninstrument`` turns them off. ``AutoSpanProcessor``, which
every ``init()`` pipeline runs, finishes the job on the spans they (and SDKs that trace themselves,
like anthropic 2.x) produce: model, provider, token counts and genai-prices cost on LLM spans; one
token count per chain of nested LLM spans; LangGraph agent nodes as AGENT spans with in-process
handoffs between them; AG2 replies and CrewAI task hand-overs as handoffs between agents;
guardrails-ai guard calls and NeMo Guardrails rails as GUARD decisions (``_guard_spans``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import threading
from collections.abc import Callable, Mapping
from contextvars import Token
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from plyra_trace import _semconv as sc
from plyra_trace._context import current_agent
from plyra_trace._guard_spans import (
    GUARDRAILS_GUARD_SPAN,
    GUARDRAILS_SCOPE,
    NEMO_SCOPE,
    guardrails_guard_attributes,
    guardrails_part_kind,
    is_guardrails_validator,
    nemo_attributes,
    validator_outcome,
)
from plyra_trace._llm import LLMUsage, cost_attributes, infer_provider
from plyra_trace._processors import rebuilt
from plyra_trace._runtime import INSTRUMENTATION_NAME
from plyra_trace._safety import log_once, logger


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a target's library and its OpenInference instrumentor live."""

    library: str  # the module that must be importable
    module: str | None  # the instrumentor's module; None: the library traces itself
    instrumentor: str  # the instrumentor's class
    extra: str  # the plyra-trace extra that installs it


_TARGETS: Final = {
    "openai": _Target(
        "openai", "openinference.instrumentation.openai", "OpenAIInstrumentor", "openai"
    ),
    "anthropic": _Target(
        "anthropic", "openinference.instrumentation.anthropic", "AnthropicInstrumentor", "anthropic"
    ),
    "langchain": _Target(
        "langchain_core",
        "openinference.instrumentation.langchain",
        "LangChainInstrumentor",
        "langchain",
    ),
    "crewai": _Target(
        "crewai", "openinference.instrumentation.crewai", "CrewAIInstrumentor", "crewai"
    ),
    "ag2": _Target("autogen", "openinference.instrumentation.ag2", "AG2Instrumentor", "ag2"),
    # guardrails-ai >= 0.5.1 traces itself (OpenInference's instrumentor supports only older
    # versions); AutoSpanProcessor turns its guard spans into GUARD decisions (_guard_spans).
    "guardrails": _Target("guardrails", None, "", ""),
}
_ALIASES: Final = {
    "langgraph": "langchain",
    "autogen": "ag2",
    "pyautogen": "ag2",
    "guardrails-ai": "guardrails",
}

_active: dict[str, Any] = {}
_lock = threading.Lock()


def _canonical(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _TARGETS:
        known = ", ".join(sorted(_TARGETS))
        raise ValueError(f"unknown instrumentation target {name!r}; expected one of {known}")
    return key


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _trace_config() -> Any:
    """OpenInference's TraceConfig honouring plyra's ``capture_io`` (no inputs/outputs when off)."""
    from openinference.instrumentation import TraceConfig

    from plyra_trace._capture import settings

    if settings.enabled:
        return TraceConfig()
    return TraceConfig(hide_inputs=True, hide_outputs=True)


def _tracer_provider() -> Any:
    from plyra_trace._config import get_active

    handle = get_active()
    return handle.provider if handle is not None else None


class _GuardrailsTracing:
    """guardrails-ai writes its own spans: instrumenting switches them on, undoing it off."""

    @staticmethod
    def _settings() -> Any:
        from guardrails.settings import settings

        return settings

    def instrument(self, **kwargs: Any) -> None:
        self._settings().disable_tracing = False

    def uninstrument(self) -> None:
        self._settings().disable_tracing = True


_SELF_TRACING: Final[dict[str, Callable[[], Any]]] = {"guardrails": _GuardrailsTracing}


def _instrument_one(name: str, *, quiet: bool) -> bool:
    """Turn on one target; a missing library or instrumentor is a one-line hint, never an error."""
    target = _TARGETS[name]
    if name in _active:
        return True
    if not _importable(target.library):
        if not quiet:
            logger.warning(
                "plyra_trace: not instrumenting %s: its library (%s) is not installed",
                name,
                target.library,
            )
        return False
    if target.module is None:
        try:
            switch = _SELF_TRACING[name]()
            switch.instrument()
        except Exception:
            log_once(f"instrument:{name}", f"plyra_trace: could not instrument {name}")
            return False
        _active[name] = switch
        return True
    if not _importable(target.module):
        logger.warning(
            "plyra_trace: not instrumenting %s: install it with  pip install 'plyra-trace[%s]'",
            name,
            target.extra,
        )
        return False
    try:
        instrumentor = getattr(importlib.import_module(target.module), target.instrumentor)()
        kwargs: dict[str, Any] = {"config": _trace_config()}
        provider = _tracer_provider()
        if provider is not None:
            kwargs["tracer_provider"] = provider
        instrumentor.instrument(**kwargs)
    except Exception:
        log_once(f"instrument:{name}", f"plyra_trace: could not instrument {name}")
        return False
    if not instrumentor.is_instrumented_by_opentelemetry:
        logger.warning(
            "plyra_trace: not instrumenting %s: the installed %s version is not supported by %s",
            name,
            target.library,
            target.module,
        )
        return False
    _active[name] = instrumentor
    if name == "langchain":
        _langchain_bridge.install(instrumentor)
    return True


class _LangChainBridge:
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


_langchain_bridge = _LangChainBridge()


def instrument(*names: str) -> list[str]:
    """Turn on auto-instrumentation for ``names`` (all targets whose library is importable when
    none is given); returns the targets now instrumented. Unknown names raise ``ValueError``."""
    wanted = [_canonical(n) for n in names] if names else list(_TARGETS)
    with _lock:
        for name in dict.fromkeys(wanted):
            _instrument_one(name, quiet=not names)
        return sorted(_active)


def uninstrument(*names: str) -> list[str]:
    """Turn auto-instrumentation off for ``names`` (all when none is given); returns those left."""
    wanted = [_canonical(n) for n in names] if names else list(_active)
    with _lock:
        for name in dict.fromkeys(wanted):
            instrumentor = _active.pop(name, None)
            if instrumentor is None:
                continue
            if name == "langchain":
                _langchain_bridge.remove()
            try:
                instrumentor.uninstrument()
            except Exception:
                log_once(f"uninstrument:{name}", f"plyra_trace: could not uninstrument {name}")
        return sorted(_active)


def instrumented() -> list[str]:
    """The targets instrumented right now."""
    return sorted(_active)


def configure(option: bool | str | Any) -> None:
    """Apply ``init(instrument=...)``: True for everything importable, or a list of names."""
    if option is None or option is False:
        return
    if option is True:
        instrument()
    elif isinstance(option, str):
        instrument(option)
    else:
        instrument(*option)


# --- span processor ------------------------------------------------------------------------------

ANTHROPIC_SDK_SCOPE: Final = "com.anthropic.sdk.python"
_OI_SCOPE_PREFIX: Final = "openinference.instrumentation."
_LANGCHAIN_SCOPE: Final = "openinference.instrumentation.langchain"
_ANTHROPIC_OI_SCOPE: Final = "openinference.instrumentation.anthropic"
_AG2_SCOPE: Final = "openinference.instrumentation.ag2"
_AG2_SENDER: Final = "ag2.sender.name"
_CREWAI_SCOPE: Final = "openinference.instrumentation.crewai"
_GRAPH_NODE_ID: Final = "graph.node.id"  # CrewAI: the agent's role
_GRAPH_NODE_PARENT_ID: Final = "graph.node.parent_id"  # CrewAI: the agent that worked before
_FRAMEWORK_CREWAI: Final = "crewai"
_LANGGRAPH_NODE: Final = "langgraph_node"
_FRAMEWORK_LANGGRAPH: Final = "langgraph"
_FRAMEWORK_AG2: Final = "ag2"
# Where a stripped token count was counted instead: "child" (a nested LLM span measured the same
# call) or "parent" (the span duplicates the OpenInference span above it).
USAGE_COUNTED_ON: Final = "plyra.llm.usage_counted_on"
_MAX_OPEN: Final = 50_000
_USAGE_PREFIXES: Final = ("llm.token_count.", "llm.cost.", "gen_ai.usage.")
_GEN_AI_CACHE_WRITE_ALT: Final = "gen_ai.usage.cache_write.input_tokens"  # anthropic 2.x's name
_SELF_TRACING_SCOPES: Final = frozenset({ANTHROPIC_SDK_SCOPE, GUARDRAILS_SCOPE, NEMO_SCOPE})


class _Open:
    """What the processor remembers about a span while it runs."""

    __slots__ = (
        "enclosing_agent",
        "has_llm",
        "last_agent",
        "parent",
        "prev_agent",
        "scope",
        "usage_below",
        "validators",
    )

    def __init__(self, parent: _Open | None, scope: str, enclosing_agent: str | None) -> None:
        self.parent = parent
        self.scope = scope
        self.enclosing_agent = enclosing_agent
        self.has_llm = False  # an LLM span finished somewhere below
        self.usage_below = False  # a span below carried token counts
        self.last_agent: str | None = None  # the last agent node that finished as a child
        self.validators: list[dict[str, Any]] | None = None  # a guardrails-ai guard call's
        self.prev_agent = (
            (parent.last_agent or parent.enclosing_agent) if parent is not None else enclosing_agent
        )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _tracked_at_start(scope: str, attributes: Mapping[str, Any]) -> bool:
    """Whether a span with no remembered parent is worth remembering: LLM or instrumentor spans."""
    if scope == INSTRUMENTATION_NAME:
        return attributes.get(sc.PLYRA_SPAN_KIND) == sc.SpanKind.LLM.value
    return scope.startswith(_OI_SCOPE_PREFIX) or scope in _SELF_TRACING_SCOPES


def _kind_of(scope: str, attributes: Mapping[str, Any]) -> str | None:
    kind = attributes.get(sc.PLYRA_SPAN_KIND)
    if isinstance(kind, str):
        return kind
    oi_kind = attributes.get(sc.OI_SPAN_KIND)
    if isinstance(oi_kind, str):
        return sc.plyra_kind_from_openinference(oi_kind).value
    return None


def _llm_enrichment(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Model, provider, OpenInference token counts and cost for an LLM span that lacks them."""
    added: dict[str, Any] = {}
    model = (
        _str(attributes.get(sc.LLM_MODEL_NAME))
        or _str(attributes.get(sc.GEN_AI_RESPONSE_MODEL))
        or _str(attributes.get(sc.GEN_AI_REQUEST_MODEL))
    )
    provider = (
        _str(attributes.get(sc.LLM_PROVIDER))
        or _str(attributes.get(sc.GEN_AI_PROVIDER))
        or _str(attributes.get(sc.GEN_AI_SYSTEM))
    )
    if model and sc.LLM_MODEL_NAME not in attributes:
        added[sc.LLM_MODEL_NAME] = model
    if provider is None:
        provider = infer_provider(model)
    if provider and sc.LLM_PROVIDER not in attributes:
        added[sc.LLM_PROVIDER] = provider.lower()
    if sc.LLM_TOKENS_PROMPT in attributes or sc.LLM_TOKENS_COMPLETION in attributes:
        prompt = _int(attributes.get(sc.LLM_TOKENS_PROMPT))
        completion = _int(attributes.get(sc.LLM_TOKENS_COMPLETION))
        cache_read = _int(attributes.get(sc.LLM_TOKENS_CACHE_READ))
        cache_write = _int(attributes.get(sc.LLM_TOKENS_CACHE_WRITE))
    elif sc.GEN_AI_INPUT_TOKENS in attributes or sc.GEN_AI_OUTPUT_TOKENS in attributes:
        prompt = _int(attributes.get(sc.GEN_AI_INPUT_TOKENS))  # includes cached input
        completion = _int(attributes.get(sc.GEN_AI_OUTPUT_TOKENS))
        cache_read = _int(attributes.get(sc.GEN_AI_CACHE_READ_TOKENS))
        cache_write = _int(
            attributes.get(sc.GEN_AI_CACHE_WRITE_TOKENS) or attributes.get(_GEN_AI_CACHE_WRITE_ALT)
        )
        added[sc.LLM_TOKENS_PROMPT] = prompt
        added[sc.LLM_TOKENS_COMPLETION] = completion
        added[sc.LLM_TOKENS_TOTAL] = prompt + completion
        if cache_read:
            added[sc.LLM_TOKENS_CACHE_READ] = cache_read
        if cache_write:
            added[sc.LLM_TOKENS_CACHE_WRITE] = cache_write
    else:
        return added
    if sc.LLM_COST_TOTAL not in attributes and (prompt or completion):
        usage = LLMUsage(prompt, completion, cache_read, cache_write)
        added.update(cost_attributes(usage, model, provider.lower() if provider else None))
    return added


def _has_usage(attributes: Mapping[str, Any]) -> bool:
    return (
        sc.LLM_TOKENS_PROMPT in attributes
        or sc.LLM_TOKENS_COMPLETION in attributes
        or sc.GEN_AI_INPUT_TOKENS in attributes
        or sc.GEN_AI_OUTPUT_TOKENS in attributes
    )


def _without_usage(attributes: Mapping[str, Any], counted_on: str) -> dict[str, Any]:
    kept = {k: v for k, v in attributes.items() if not k.startswith(_USAGE_PREFIXES)}
    kept[USAGE_COUNTED_ON] = counted_on
    return kept


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


def _agent_attributes(name: str, framework: str) -> dict[str, Any]:
    return {
        **sc.kind_attributes(sc.SpanKind.AGENT),
        sc.AGENT_NAME: name,
        sc.GEN_AI_AGENT_NAME: name,
        sc.AGENT_FRAMEWORK: framework,
    }


def _handoff(sender: str | None, receiver: str) -> dict[str, str]:
    if not sender or sender == receiver:
        return {}
    return {sc.HANDOFF_FROM: sender, sc.HANDOFF_TO: receiver, sc.HANDOFF_PROTOCOL: sc.IN_PROCESS}


class AutoSpanProcessor(SpanProcessor):
    """Makes instrumentor and SDK spans first-class plyra spans (runs in every ``init()``).

    It remembers only spans that can matter (LLM spans, OpenInference and anthropic SDK spans, and
    spans below them) while they run, so plyra's own spans elsewhere cost one dict lookup.
    """

    def __init__(self) -> None:
        self._open: dict[int, _Open] = {}

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        parent_entry = None
        if self._open:  # remote parents are never in it
            parent = span.parent
            if parent is not None:
                parent_entry = self._open.get(parent.span_id)
        scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
        if parent_entry is None and not _tracked_at_start(scope, span.attributes or {}):
            return
        if len(self._open) >= _MAX_OPEN:  # spans that never end must not grow memory forever
            log_once("auto-open", "plyra_trace: too many unfinished spans; enrichment is partial")
            return
        enclosing = parent_entry.enclosing_agent if parent_entry else current_agent(parent_context)
        entry = _Open(parent_entry, scope, enclosing)
        if scope == GUARDRAILS_SCOPE and span.name == GUARDRAILS_GUARD_SPAN:
            entry.validators = []
        self._open[span.context.span_id] = entry

    def transform(self, span: ReadableSpan) -> ReadableSpan:
        entry = self._open.pop(span.context.span_id, None)
        scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
        if entry is None and scope == INSTRUMENTATION_NAME:
            return span  # a plyra span with nothing nested that matters
        try:
            return self._transform(span, entry, scope)
        except Exception:
            log_once("auto-span", "plyra_trace: could not enrich an instrumented span")
            return span

    def _transform(self, span: ReadableSpan, entry: _Open | None, scope: str) -> ReadableSpan:
        if scope == GUARDRAILS_SCOPE:
            return self._guardrails(span, entry)
        if scope == NEMO_SCOPE:
            added = nemo_attributes(span.name, span.attributes or {})
            return span if added is None else rebuilt(span, {**(span.attributes or {}), **added})
        kind = _kind_of(scope, span.attributes or {})
        if kind is None and scope != ANTHROPIC_SDK_SCOPE:
            return span
        attributes = dict(span.attributes or {})
        if scope == ANTHROPIC_SDK_SCOPE:
            kind = self._anthropic_sdk_kind(attributes, entry)
            if kind is None:  # duplicates the OpenInference span of the same call
                attributes.update(sc.kind_attributes(sc.SpanKind.UNKNOWN))
                return rebuilt(span, _without_usage(attributes, "parent"))
        if kind is None:
            return span
        changed = False
        if kind == sc.SpanKind.LLM.value:
            added = _llm_enrichment(attributes)
            if added:
                attributes.update(added)
                changed = True
            if entry is not None and entry.usage_below and _has_usage(attributes):
                attributes = _without_usage(attributes, "child")
                changed = True
            self._mark_ancestors(entry, usage=_has_usage(attributes))
        elif scope == _LANGCHAIN_SCOPE and entry is not None:
            node = _langgraph_node(span, attributes)
            if node is not None and (entry.has_llm or kind == sc.SpanKind.AGENT.value):
                attributes.update(_agent_attributes(node, _FRAMEWORK_LANGGRAPH))
                attributes.update(_handoff(entry.prev_agent, node))
                if entry.parent is not None:
                    entry.parent.last_agent = node
                changed = True
        elif scope == _AG2_SCOPE and kind == sc.SpanKind.AGENT.value:
            name = _str(attributes.get(sc.AGENT_NAME))
            if name is not None:
                attributes.update(_agent_attributes(name, _FRAMEWORK_AG2))
                attributes.update(_handoff(_str(attributes.get(_AG2_SENDER)), name))
                changed = True
        elif scope == _CREWAI_SCOPE and kind == sc.SpanKind.AGENT.value:
            name = _str(attributes.get(_GRAPH_NODE_ID))
            if name is not None:
                sender = _str(attributes.get(_GRAPH_NODE_PARENT_ID))
                if sender is None and entry is not None:
                    sender = entry.enclosing_agent
                attributes.update(_agent_attributes(name, _FRAMEWORK_CREWAI))
                attributes.update(_handoff(sender, name))
                changed = True
        if sc.PLYRA_SPAN_KIND not in attributes:
            attributes.update(sc.kind_attributes(sc.SpanKind(kind)))
            changed = True
        return rebuilt(span, attributes) if changed else span

    @staticmethod
    def _guardrails(span: ReadableSpan, entry: _Open | None) -> ReadableSpan:
        """A guard call becomes the GUARD decision; its validators and steps report to it."""
        attributes = dict(span.attributes or {})
        if entry is not None and entry.validators is not None:
            attributes.update(guardrails_guard_attributes(attributes, entry.validators))
            return rebuilt(span, attributes)
        if is_guardrails_validator(attributes):
            node = entry.parent if entry is not None else None
            while node is not None and node.validators is None:
                node = node.parent
            if node is not None and node.validators is not None:
                node.validators.append(validator_outcome(attributes))
        kind = guardrails_part_kind(attributes)
        if kind is None:
            return span
        attributes.update(sc.kind_attributes(kind))
        return rebuilt(span, attributes)

    @staticmethod
    def _anthropic_sdk_kind(attributes: dict[str, Any], entry: _Open | None) -> str | None:
        """LLM for a messages call, None when an OpenInference span above already records it."""
        if attributes.get(sc.GEN_AI_OPERATION) != "chat":
            return sc.SpanKind.UNKNOWN.value
        parent = entry.parent if entry is not None else None
        if parent is not None and parent.scope == _ANTHROPIC_OI_SCOPE:
            return None
        attributes.update(sc.kind_attributes(sc.SpanKind.LLM))
        return sc.SpanKind.LLM.value

    @staticmethod
    def _mark_ancestors(entry: _Open | None, *, usage: bool) -> None:
        node = entry.parent if entry is not None else None
        while node is not None:
            node.has_llm = True
            if usage:
                node.usage_below = True
            node = node.parent

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        self._open.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


__all__ = ["AutoSpanProcessor", "configure", "instrument", "instrumented", "uninstrument"]
