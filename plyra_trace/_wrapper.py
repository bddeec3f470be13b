"""The one wrapper engine behind every decorator.

A decorator describes its span once, as a ``SpanRecipe``; ``wrap`` turns any callable (function,
method, class/static method, coroutine, generator, async generator) into a traced one. The per-call
work is kept small: no signature inspection, no tracer lookup, attributes handed to the SDK at once.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from plyra_trace import _capture, _runtime
from plyra_trace import _semconv as sc
from plyra_trace._context import current_agent, scope_attributes, with_agent
from plyra_trace._safety import log_once

ResultHook = Callable[[Any], Mapping[str, Any]]

_SKIPPED_FIRST: Final = frozenset({"self", "cls"})
_STREAM_ITEMS_ATTRIBUTE: Final = "plyra.stream.items"
_CANCELLED_ATTRIBUTE: Final = "plyra.cancelled"


@dataclass(slots=True)
class SpanRecipe:
    """Everything about a decorated callable's span that does not change between calls."""

    name: str
    kind: sc.SpanKind
    attributes: dict[str, Any] = field(default_factory=dict)
    agent_name: str | None = None
    capture_input: bool | None = None
    capture_output: bool | None = None
    on_result: ResultHook | None = None

    def __post_init__(self) -> None:
        self.attributes = {**sc.kind_attributes(self.kind), **self.attributes}

    def wants_input(self) -> bool:
        flag = self.capture_input
        return _capture.settings.enabled if flag is None else flag

    def wants_output(self) -> bool:
        flag = self.capture_output
        return _capture.settings.enabled if flag is None else flag


class _ArgumentNames:
    """Maps a call's arguments to parameter names, prepared once per decorated function."""

    __slots__ = ("defaults", "positional", "skip_first", "var_positional")

    def __init__(self, fn: Callable[..., Any]) -> None:
        try:
            parameters = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            parameters = []
        kinds = inspect.Parameter
        self.positional = tuple(
            p.name
            for p in parameters
            if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
        )
        self.skip_first = bool(self.positional) and self.positional[0] in _SKIPPED_FIRST
        self.var_positional = next(
            (p.name for p in parameters if p.kind is kinds.VAR_POSITIONAL), "args"
        )
        skipped = self.positional[0] if self.skip_first else None
        self.defaults = {
            p.name: p.default
            for p in parameters
            if p.default is not kinds.empty and p.name != skipped
        }

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = dict(self.defaults) if self.defaults else {}
        names = self.positional
        if len(args) <= len(names):
            bound.update(zip(names, args, strict=False))
        else:
            bound.update(zip(names, args, strict=False))
            bound[self.var_positional] = list(args[len(names) :])
        if self.skip_first and args:
            bound.pop(names[0], None)
        if kwargs:
            bound.update(kwargs)
        return bound


def _start(
    recipe: SpanRecipe, names: _ArgumentNames, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Span, otel_context.Context] | None:
    """Start the span for one call and the context to run it in; None if tracing failed."""
    try:
        parent = otel_context.get_current()
        attributes = recipe.attributes
        scoped = scope_attributes(parent)
        wants_input = recipe.wants_input()
        if scoped is not None or recipe.agent_name is not None or wants_input:
            attributes = dict(attributes)
            if scoped is not None:  # set here in one go; the pipeline skips our spans
                attributes.update(scoped)
            if recipe.agent_name is not None:
                caller = current_agent(parent)
                if caller is not None and caller != recipe.agent_name:
                    attributes[sc.HANDOFF_FROM] = caller
                    attributes[sc.HANDOFF_TO] = recipe.agent_name
                    attributes[sc.HANDOFF_PROTOCOL] = sc.IN_PROCESS
            if wants_input:
                value, mime = _capture.encode_input(names.bind(args, kwargs))
                attributes[sc.INPUT_VALUE] = value
                attributes[sc.INPUT_MIME_TYPE] = mime
        span = _runtime.tracer.start_span(recipe.name, context=parent, attributes=attributes)
        ctx = trace.set_span_in_context(span, parent)
        if recipe.agent_name is not None:
            ctx = with_agent(recipe.agent_name, ctx)
        return span, ctx
    except Exception:
        log_once("start", "plyra_trace: could not start a span; the call runs untraced")
        return None


def _succeed(span: Span, recipe: SpanRecipe, result: Any, stream_items: int | None = None) -> None:
    """Record the outcome of a call that returned normally, then end its span."""
    end_time = time.time_ns()  # serialising and pricing are not part of the call
    try:
        attributes: dict[str, Any] = {}
        if recipe.wants_output() and result is not None:
            value, mime = _capture.encode_output(result)
            attributes[sc.OUTPUT_VALUE] = value
            attributes[sc.OUTPUT_MIME_TYPE] = mime
        if recipe.on_result is not None:
            attributes.update(recipe.on_result(result))
        if stream_items is not None:
            attributes[_STREAM_ITEMS_ATTRIBUTE] = stream_items
        if attributes:
            _runtime.set_attributes(span, attributes)
    except Exception:
        log_once("finish", "plyra_trace: could not record a call's result on its span")
    finally:
        span.end(end_time)


def _fail(span: Span, error: BaseException, stream_items: int | None = None) -> None:
    """Record an exception (cancellation is not an error), then end the span."""
    end_time = time.time_ns()
    try:
        if stream_items is not None:
            span.set_attribute(_STREAM_ITEMS_ATTRIBUTE, stream_items)
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            span.set_attribute(_CANCELLED_ATTRIBUTE, True)
        elif isinstance(error, SystemExit) and error.code in (0, None):
            pass
        else:
            span.record_exception(error, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    except Exception:
        log_once("fail", "plyra_trace: could not record an exception on its span")
    finally:
        span.end(end_time)


class _StreamOutput:
    """Collects what a generator yields, within the capture size limit."""

    __slots__ = ("count", "items", "size")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.count = 0
        self.size = 0

    def add(self, item: Any) -> None:
        self.count += 1
        if self.size <= _capture.settings.max_chars:
            self.items.append(item)
            self.size += len(item) if isinstance(item, str | bytes) else 16

    def result(self) -> Any:
        if self.items and all(isinstance(item, str) for item in self.items):
            return "".join(self.items)
        return self.items


def _wrap_function(fn: Callable[..., Any], recipe: SpanRecipe) -> Callable[..., Any]:
    names = _ArgumentNames(fn)

    def traced(*args: Any, **kwargs: Any) -> Any:
        started = _start(recipe, names, args, kwargs)
        if started is None:
            return fn(*args, **kwargs)
        span, ctx = started
        token = otel_context.attach(ctx)
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            _fail(span, error)
            raise
        finally:
            otel_context.detach(token)
        _succeed(span, recipe, result)
        return result

    return traced


def _wrap_coroutine(fn: Callable[..., Any], recipe: SpanRecipe) -> Callable[..., Any]:
    names = _ArgumentNames(fn)

    async def traced(*args: Any, **kwargs: Any) -> Any:
        started = _start(recipe, names, args, kwargs)
        if started is None:
            return await fn(*args, **kwargs)
        span, ctx = started
        token = otel_context.attach(ctx)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            _fail(span, error)
            raise
        finally:
            otel_context.detach(token)
        _succeed(span, recipe, result)
        return result

    return traced


def _wrap_generator(fn: Callable[..., Any], recipe: SpanRecipe) -> Callable[..., Any]:
    names = _ArgumentNames(fn)

    def traced(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        started = _start(recipe, names, args, kwargs)
        if started is None:
            return (yield from fn(*args, **kwargs))
        span, ctx = started
        output = _StreamOutput()
        token = otel_context.attach(ctx)
        try:
            inner = fn(*args, **kwargs)
            value = next(inner)
        except StopIteration as stop:
            otel_context.detach(token)
            _succeed(span, recipe, stop.value, 0)
            return stop.value
        except BaseException as error:
            otel_context.detach(token)
            _fail(span, error)
            raise
        otel_context.detach(token)
        while True:
            output.add(value)
            try:
                sent = yield value
            except GeneratorExit as exit_:
                token = otel_context.attach(ctx)
                try:
                    inner.close()
                finally:
                    otel_context.detach(token)
                _fail(span, exit_, output.count)
                raise
            except BaseException as thrown:
                step: Callable[[], Any] = functools.partial(inner.throw, thrown)
            else:
                step = functools.partial(inner.send, sent)
            token = otel_context.attach(ctx)
            try:
                value = step()
            except StopIteration as stop:
                _succeed(
                    span,
                    recipe,
                    stop.value if stop.value is not None else output.result(),
                    output.count,
                )
                return stop.value
            except BaseException as error:
                _fail(span, error, output.count)
                raise
            finally:
                otel_context.detach(token)

    return traced


def _wrap_async_generator(fn: Callable[..., Any], recipe: SpanRecipe) -> Callable[..., Any]:
    names = _ArgumentNames(fn)

    async def traced(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        started = _start(recipe, names, args, kwargs)
        if started is None:
            async for item in fn(*args, **kwargs):
                yield item
            return
        span, ctx = started
        output = _StreamOutput()
        inner = fn(*args, **kwargs)
        step: Callable[[], Any] = functools.partial(inner.asend, None)
        while True:
            token = otel_context.attach(ctx)
            try:
                value = await step()
            except StopAsyncIteration:
                _succeed(span, recipe, output.result(), output.count)
                return
            except BaseException as error:
                _fail(span, error, output.count)
                raise
            finally:
                otel_context.detach(token)
            output.add(value)
            try:
                sent = yield value
            except GeneratorExit as exit_:
                token = otel_context.attach(ctx)
                try:
                    await inner.aclose()
                finally:
                    otel_context.detach(token)
                _fail(span, exit_, output.count)
                raise
            except BaseException as thrown:
                step = functools.partial(inner.athrow, thrown)
            else:
                step = functools.partial(inner.asend, sent)

    return traced


def wrap(fn: Any, recipe: SpanRecipe) -> Any:
    """``fn`` traced by ``recipe``; keeps its signature, ``__wrapped__`` and coroutine-ness."""
    if isinstance(fn, classmethod | staticmethod):
        return type(fn)(wrap(fn.__func__, recipe))
    if not callable(fn):
        raise TypeError(f"plyra_trace decorators apply to callables, not {type(fn).__name__}")
    if inspect.isasyncgenfunction(fn):
        traced = _wrap_async_generator(fn, recipe)
    elif inspect.iscoroutinefunction(fn):
        traced = _wrap_coroutine(fn, recipe)
    elif inspect.isgeneratorfunction(fn):
        traced = _wrap_generator(fn, recipe)
    else:
        traced = _wrap_function(fn, recipe)
    functools.update_wrapper(traced, fn)
    return traced


def describe_parameters(fn: Callable[..., Any]) -> str | None:
    """A small JSON description of ``fn``'s parameters, for ``tool.parameters``."""
    target = fn.__func__ if isinstance(fn, classmethod | staticmethod) else fn
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    described: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.name in _SKIPPED_FIRST:
            continue
        annotation = parameter.annotation
        if annotation is inspect.Parameter.empty:
            type_name = "any"
        elif isinstance(annotation, type):
            type_name = annotation.__name__
        else:
            type_name = str(annotation)
        entry: dict[str, Any] = {"type": type_name}
        if parameter.default is inspect.Parameter.empty:
            entry["required"] = True
        described[parameter.name] = entry
    return json.dumps(described)
