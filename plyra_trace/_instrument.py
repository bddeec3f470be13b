"""The auto-instrumentation registry: which OpenInference instrumentor serves which target.

``instrument("openai", ...)`` turns on the instrumentor of each named target (all importable ones
when none is named) on the provider of the ``init()`` in force; ``uninstrument`` turns them off.
An integration may add a bridge installed alongside a target's instrumentor (LangChain's, in
``plyra_trace/integrations/langchain.py``): the registry knows no framework. What happens to the
spans is ``AutoSpanProcessor``'s job (``_auto.py``). A library that traces itself (guardrails-ai)
has a switch instead of an instrumentor.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from plyra_trace import _runtime
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
    # versions); AutoSpanProcessor turns its guard spans into GUARD decisions
    # (integrations/guardrails.py).
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
# target -> (install(instrumentor), remove()) of an integration's bridge that goes with it
_bridges: dict[str, tuple[Callable[[Any], None], Callable[[], None]]] = {}


def add_bridge(target: str, install: Callable[[Any], None], remove: Callable[[], None]) -> None:
    """Install ``install(instrumentor)`` whenever ``target`` is instrumented and ``remove()`` when
    it is not (integrations call it when imported; the registry knows no framework)."""
    _bridges[_canonical(target)] = (install, remove)


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
        provider = _runtime.provider
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
    bridge = _bridges.get(name)
    if bridge is not None:
        try:
            bridge[0](instrumentor)
        except Exception:
            log_once(f"bridge:{name}", f"plyra_trace: {name} spans will not nest calls in runs")
    return True


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
            bridge = _bridges.get(name)
            if bridge is not None:
                try:
                    bridge[1]()
                except Exception:
                    log_once(f"unbridge:{name}", f"plyra_trace: could not remove {name}'s bridge")
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
