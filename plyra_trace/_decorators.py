"""The public decorators: each describes its span kind and attributes, the engine does the rest.

All of them work bare (``@agent``) and called (``@agent(name="planner")``), on every kind of
callable the wrapper engine supports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from plyra_trace import _semconv as sc
from plyra_trace._guard import GuardResult
from plyra_trace._llm import infer_provider, llm_result_attributes, model_attributes
from plyra_trace._wrapper import SpanRecipe, describe_parameters, wrap

F = TypeVar("F", bound=Callable[..., Any])


def _name_of(fn: Any) -> str:
    """The span name for a callable: its qualified name (``Planner.plan``)."""
    target = getattr(fn, "__func__", fn)
    return str(getattr(target, "__qualname__", None) or getattr(target, "__name__", "call"))


def _short_name(fn: Any) -> str:
    """The agent or tool name for a callable: its plain ``__name__``."""
    return str(getattr(getattr(fn, "__func__", fn), "__name__", None) or "call")


def _decorate(
    fn: Any,
    make_recipe: Callable[[Any], SpanRecipe],
) -> Any:
    if fn is not None:
        return wrap(fn, make_recipe(fn))

    def decorator(target: F) -> F:
        return wrap(target, make_recipe(target))  # type: ignore[no-any-return]

    return decorator


@overload
def trace(fn: F, /) -> F: ...
@overload
def trace(
    *,
    name: str | None = ...,
    kind: sc.SpanKind | str = ...,
    capture_input: bool | None = ...,
    capture_output: bool | None = ...,
    attributes: dict[str, Any] | None = ...,
) -> Callable[[F], F]: ...
def trace(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    kind: sc.SpanKind | str = sc.SpanKind.CHAIN,
    capture_input: bool | None = None,
    capture_output: bool | None = None,
    attributes: dict[str, Any] | None = None,
) -> Any:
    """Trace a call as a span of any kind (CHAIN by default; RETRIEVER, ROUTER, ...)."""
    span_kind = sc.coerce_kind(kind)
    if span_kind is sc.SpanKind.AGENT:
        as_agent = agent(name=name, capture_input=capture_input, capture_output=capture_output)
        return as_agent(fn) if fn is not None else as_agent

    def recipe(target: Any) -> SpanRecipe:
        return SpanRecipe(
            name=name or _name_of(target),
            kind=span_kind,
            attributes=dict(attributes or {}),
            capture_input=capture_input,
            capture_output=capture_output,
        )

    return _decorate(fn, recipe)


@overload
def agent(fn: F, /) -> F: ...
@overload
def agent(
    *,
    name: str | None = ...,
    framework: str | None = ...,
    pattern: str | None = ...,
    capture_input: bool | None = ...,
    capture_output: bool | None = ...,
) -> Callable[[F], F]: ...
def agent(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    framework: str | None = None,
    pattern: str | None = None,
    capture_input: bool | None = None,
    capture_output: bool | None = None,
) -> Any:
    """Trace an agent: an AGENT span; calling another agent inside records the handoff."""

    def recipe(target: Any) -> SpanRecipe:
        agent_name = name or _short_name(target)
        attributes: dict[str, Any] = {sc.AGENT_NAME: agent_name, sc.GEN_AI_AGENT_NAME: agent_name}
        if framework:
            attributes[sc.AGENT_FRAMEWORK] = framework
        if pattern:
            attributes[sc.AGENT_PATTERN] = pattern
        return SpanRecipe(
            name=agent_name,
            kind=sc.SpanKind.AGENT,
            attributes=attributes,
            agent_name=agent_name,
            capture_input=capture_input,
            capture_output=capture_output,
        )

    return _decorate(fn, recipe)


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = ...,
    description: str | None = ...,
    capture_input: bool | None = ...,
    capture_output: bool | None = ...,
) -> Callable[[F], F]: ...
def tool(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    capture_input: bool | None = None,
    capture_output: bool | None = None,
) -> Any:
    """Trace a tool call: a TOOL span with the tool's name, description and parameters."""

    def recipe(target: Any) -> SpanRecipe:
        tool_name = name or _short_name(target)
        doc = description or _first_line(getattr(target, "__doc__", None))
        attributes: dict[str, Any] = {sc.TOOL_NAME: tool_name, sc.GEN_AI_TOOL_NAME: tool_name}
        if doc:
            attributes[sc.TOOL_DESCRIPTION] = doc
            attributes[sc.GEN_AI_TOOL_DESCRIPTION] = doc
        parameters = describe_parameters(target)
        if parameters:
            attributes[sc.TOOL_PARAMETERS] = parameters
        return SpanRecipe(
            name=tool_name,
            kind=sc.SpanKind.TOOL,
            attributes=attributes,
            capture_input=capture_input,
            capture_output=capture_output,
        )

    return _decorate(fn, recipe)


def _guard_attributes(result: Any) -> dict[str, Any]:
    return result.to_attributes() if isinstance(result, GuardResult) else {}


@overload
def guard(fn: F, /) -> F: ...
@overload
def guard(
    *,
    name: str | None = ...,
    policy: str | None = ...,
    provider: str | None = ...,
    capture_input: bool | None = ...,
    capture_output: bool | None = ...,
) -> Callable[[F], F]: ...
def guard(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    policy: str | None = None,
    provider: str | None = None,
    capture_input: bool | None = None,
    capture_output: bool | None = None,
) -> Any:
    """Trace a policy check: a GUARD span; a returned ``GuardResult`` fills ``guard.*``."""

    def recipe(target: Any) -> SpanRecipe:
        guard_name = name or policy or _name_of(target)
        attributes: dict[str, Any] = {sc.GUARD_NAME: guard_name}
        if policy:
            attributes[sc.GUARD_POLICY] = policy
        if provider:
            attributes[sc.GUARD_PROVIDER] = provider
        return SpanRecipe(
            name=guard_name,
            kind=sc.SpanKind.GUARD,
            attributes=attributes,
            capture_input=capture_input,
            capture_output=capture_output,
            on_result=_guard_attributes,
        )

    return _decorate(fn, recipe)


@overload
def llm(fn: F, /) -> F: ...
@overload
def llm(
    *,
    model: str | None = ...,
    provider: str | None = ...,
    name: str | None = ...,
    capture_input: bool | None = ...,
    capture_output: bool | None = ...,
) -> Callable[[F], F]: ...
def llm(
    fn: Any = None,
    /,
    *,
    model: str | None = None,
    provider: str | None = None,
    name: str | None = None,
    capture_input: bool | None = None,
    capture_output: bool | None = None,
) -> Any:
    """Trace a model call: an LLM span with model, provider, token usage and cost."""
    resolved_provider = provider or infer_provider(model)

    def on_result(result: Any) -> dict[str, Any]:
        return llm_result_attributes(result, model, resolved_provider)

    def recipe(target: Any) -> SpanRecipe:
        return SpanRecipe(
            name=name or (f"chat {model}" if model else _name_of(target)),
            kind=sc.SpanKind.LLM,
            attributes=dict(model_attributes(model, resolved_provider)),
            capture_input=capture_input,
            capture_output=capture_output,
            on_result=on_result,
        )

    return _decorate(fn, recipe)


def _first_line(doc: str | None) -> str | None:
    if not doc:
        return None
    line = doc.strip().splitlines()[0].strip()
    return line or None
