"""Session, user, metadata and tags: who and what a unit of work belongs to.

They live in the OpenTelemetry context (so they follow threads that copy it and every asyncio task)
and in baggage (so the propagation module carries them across processes). A span processor copies
them onto every span started inside the block, our own and other instrumentations' alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import baggage
from opentelemetry import context as otel_context

from plyra_trace import _semconv as sc

SCOPE_KEY = otel_context.create_key("plyra.scope")
_AGENT_KEY = otel_context.create_key("plyra.agent")


@dataclass(frozen=True, slots=True)
class Scope:
    """The session, user, metadata and tags in force, with the span attributes they imply."""

    session_id: str | None = None
    user_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def replace(
        self,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: tuple[str, ...] | None = None,
    ) -> Scope:
        """A copy with the given fields changed (None keeps the current value)."""
        session_id = self.session_id if session_id is None else session_id
        user_id = self.user_id if user_id is None else user_id
        metadata = self.metadata if metadata is None else metadata
        tags = self.tags if tags is None else tags
        return Scope(
            session_id,
            user_id,
            metadata,
            tags,
            _attributes_for(session_id, user_id, metadata, tags),
        )


_EMPTY = Scope()


def _attributes_for(
    session_id: str | None, user_id: str | None, metadata: Mapping[str, Any], tags: tuple[str, ...]
) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if session_id is not None:
        attributes[sc.SESSION_ID] = session_id
        attributes[sc.GEN_AI_CONVERSATION_ID] = session_id
    if user_id is not None:
        attributes[sc.USER_ID] = user_id
    if metadata:
        attributes[sc.METADATA] = json.dumps(metadata, default=repr, ensure_ascii=False)
    if tags:
        attributes[sc.TAGS] = list(tags)
    return attributes


def current_scope(ctx: otel_context.Context | None = None) -> Scope:
    """The scope in ``ctx`` (default: the current context)."""
    scope = otel_context.get_value(SCOPE_KEY, ctx)
    return scope if isinstance(scope, Scope) else _EMPTY


def scope_attributes(ctx: otel_context.Context | None = None) -> Mapping[str, Any] | None:
    """The span attributes of the scope in ``ctx``, or None without one (hot path)."""
    scope = otel_context.get_value(SCOPE_KEY, ctx)
    return scope.attributes if isinstance(scope, Scope) else None


def with_scope(scope: Scope, ctx: otel_context.Context | None = None) -> otel_context.Context:
    """``ctx`` with ``scope`` in force, mirrored into baggage for propagation."""
    ctx = otel_context.set_value(SCOPE_KEY, scope, ctx)
    if scope.session_id is not None:
        ctx = baggage.set_baggage(sc.BAGGAGE_SESSION, scope.session_id, ctx)
    if scope.user_id is not None:
        ctx = baggage.set_baggage(sc.BAGGAGE_USER, scope.user_id, ctx)
    return ctx


def current_agent(ctx: otel_context.Context | None = None) -> str | None:
    """The name of the innermost agent running in ``ctx``."""
    name = otel_context.get_value(_AGENT_KEY, ctx)
    return name if isinstance(name, str) else None


def with_agent(name: str, ctx: otel_context.Context | None = None) -> otel_context.Context:
    return otel_context.set_value(_AGENT_KEY, name, ctx)


class _ScopeBlock:
    """A ``with`` block that puts a scope in force and restores the previous one on exit.

    A small class rather than a generator-based context manager: it is entered per request.
    """

    __slots__ = ("_build", "_token")

    def __init__(self, build: Callable[[Scope], Scope]) -> None:
        self._build = build
        self._token: object | None = None

    def __enter__(self) -> None:
        ctx = otel_context.get_current()
        before = current_scope(ctx)
        after = self._build(before)
        ctx = otel_context.set_value(SCOPE_KEY, after, ctx)
        if after.session_id != before.session_id and after.session_id is not None:
            ctx = baggage.set_baggage(sc.BAGGAGE_SESSION, after.session_id, ctx)
        if after.user_id != before.user_id and after.user_id is not None:
            ctx = baggage.set_baggage(sc.BAGGAGE_USER, after.user_id, ctx)
        self._token = otel_context.attach(ctx)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None


def _clean_id(kind: str, value: object) -> str:
    if value is None:
        raise TypeError(f"{kind} id must be a string, not None")
    text = str(value)
    if not text:
        raise ValueError(f"{kind} id must not be empty")
    return text


def session(session_id: str) -> AbstractContextManager[None]:
    """Attribute every span inside the block to a session (a conversation, a run)."""
    clean = _clean_id("session", session_id)
    return _ScopeBlock(lambda scope: scope.replace(session_id=clean))


def user(user_id: str) -> AbstractContextManager[None]:
    """Attribute every span inside the block to a user."""
    clean = _clean_id("user", user_id)
    return _ScopeBlock(lambda scope: scope.replace(user_id=clean))


def metadata(values: Mapping[str, Any]) -> AbstractContextManager[None]:
    """Add key/value metadata to every span inside the block; inner blocks win on conflicts."""
    if not isinstance(values, Mapping):
        raise TypeError("metadata() takes a mapping, e.g. metadata({'tier': 'enterprise'})")
    added = dict(values)
    return _ScopeBlock(lambda scope: scope.replace(metadata={**scope.metadata, **added}))


def tags(values: Iterable[str]) -> AbstractContextManager[None]:
    """Add tags to every span inside the block; nested blocks add to the outer tags."""
    added = [values] if isinstance(values, str) else [str(tag) for tag in values]
    return _ScopeBlock(
        lambda scope: scope.replace(tags=tuple(dict.fromkeys((*scope.tags, *added))))
    )
