"""Session, user, metadata and tags: who and what a unit of work belongs to.

They live in the OpenTelemetry context (so they follow threads that copy it and every asyncio task)
and in baggage (so the propagation module carries them across processes). A span processor copies
them onto every span started inside the block, our own and other instrumentations' alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
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


@contextmanager
def _entered(scope: Scope) -> Iterator[None]:
    token = otel_context.attach(with_scope(scope))
    try:
        yield
    finally:
        otel_context.detach(token)


def _clean_id(kind: str, value: object) -> str:
    if value is None:
        raise TypeError(f"{kind} id must be a string, not None")
    text = str(value)
    if not text:
        raise ValueError(f"{kind} id must not be empty")
    return text


def session(session_id: str) -> Any:
    """Attribute every span inside the block to a session (a conversation, a run)."""
    return _entered(current_scope().replace(session_id=_clean_id("session", session_id)))


def user(user_id: str) -> Any:
    """Attribute every span inside the block to a user."""
    return _entered(current_scope().replace(user_id=_clean_id("user", user_id)))


def metadata(values: Mapping[str, Any]) -> Any:
    """Add key/value metadata to every span inside the block; inner blocks win on conflicts."""
    if not isinstance(values, Mapping):
        raise TypeError("metadata() takes a mapping, e.g. metadata({'tier': 'enterprise'})")
    scope = current_scope()
    return _entered(scope.replace(metadata={**scope.metadata, **values}))


def tags(values: Iterable[str]) -> Any:
    """Add tags to every span inside the block; nested blocks add to the outer tags."""
    if isinstance(values, str):
        values = [values]
    scope = current_scope()
    merged = dict.fromkeys((*scope.tags, *(str(tag) for tag in values)))
    return _entered(scope.replace(tags=tuple(merged)))
