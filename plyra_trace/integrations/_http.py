"""HTTP pieces shared by the ASGI, WSGI and httpx integrations: semconv attributes, URL exclusion,
header capture and the per-request bookkeeping of a server span.

Stdlib and core only, so importing the ASGI middleware never imports a web framework.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from plyra_trace import _runtime
from plyra_trace import _semconv as sc
from plyra_trace._context import SCOPE_KEY, scope_attributes, with_agent
from plyra_trace._propagation import (
    context_fields,
    continuation,
    extract_context,
    handoff_attributes,
    remote_parent,
    scope_from_baggage,
    take_pending_handoff,
    without_handoff,
)
from plyra_trace._safety import log_once

# OpenTelemetry HTTP semantic conventions (stable names).
METHOD: Final = "http.request.method"
METHOD_ORIGINAL: Final = "http.request.method_original"
STATUS_CODE: Final = "http.response.status_code"
ROUTE: Final = "http.route"
URL_SCHEME: Final = "url.scheme"
URL_PATH: Final = "url.path"
URL_QUERY: Final = "url.query"
URL_FULL: Final = "url.full"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
CLIENT_ADDRESS: Final = "client.address"
CLIENT_PORT: Final = "client.port"
USER_AGENT: Final = "user_agent.original"
PROTOCOL_NAME: Final = "network.protocol.name"
PROTOCOL_VERSION: Final = "network.protocol.version"
ERROR_TYPE: Final = "error.type"
# plyra's own: streamed responses.
TIME_TO_FIRST_BYTE: Final = "plyra.http.time_to_first_byte_ms"
CHUNKS: Final = "plyra.http.response.chunks"
CANCELLED: Final = "plyra.cancelled"

KNOWN_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_SENSITIVE_QUERY: Final = frozenset(
    {"sig", "signature", "token", "access_token", "api_key", "apikey", "key", "password"}
)
_SENSITIVE_QUERY_PATTERN: Final = re.compile(
    r"(?i)(?:^|&)(?:x-amz-[a-z-]+|x-goog-signature|" + "|".join(_SENSITIVE_QUERY) + r")="
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def url_matcher(excluded_urls: str | Iterable[str] | None) -> Callable[[str], object] | None:
    """A predicate for paths to leave untraced: each entry is a regular expression searched in
    the path (``"/health"`` also skips ``/healthz``; anchor with ``"^/health$"``)."""
    if excluded_urls is None:
        return None
    entries = excluded_urls.split(",") if isinstance(excluded_urls, str) else list(excluded_urls)
    patterns = [entry.strip() for entry in entries if entry and entry.strip()]
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns)).search


def header_allowlist(capture_headers: Iterable[str] | None) -> frozenset[str]:
    """Lowercased header names whose values become span attributes."""
    if capture_headers is None:
        return frozenset()
    if isinstance(capture_headers, str):
        capture_headers = capture_headers.split(",")
    return frozenset(name.strip().lower() for name in capture_headers if name.strip())


def header_attributes(
    direction: str, headers: Iterable[tuple[Any, Any]], allow: frozenset[str]
) -> dict[str, list[str]]:
    """``http.<direction>.header.<name>`` attributes for the allowlisted headers (all values)."""
    found: dict[str, list[str]] = {}
    for key, value in headers:
        name = _text(key).lower()
        if name.startswith("http_"):  # WSGI environ keys
            name = name[5:].replace("_", "-")
        if name in allow:
            found.setdefault(f"http.{direction}.header.{name}", []).append(_text(value))
    return found


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return str(value)


def redact_query(query: str) -> str:
    """The query string with values of credential-like parameters replaced by ``REDACTED``."""
    if not _SENSITIVE_QUERY_PATTERN.search(query):
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, "REDACTED" if _sensitive_key(k) else v) for k, v in pairs])


def _sensitive_key(key: str) -> bool:
    lowered = key.lower()
    return (
        lowered in _SENSITIVE_QUERY or lowered.startswith("x-amz-") or lowered == "x-goog-signature"
    )


def method_attributes(method: str) -> tuple[str, dict[str, str]]:
    """The span-name method and method attributes (unknown methods become ``_OTHER``)."""
    if method in KNOWN_METHODS:
        return method, {METHOD: method}
    return "HTTP", {METHOD: "_OTHER", METHOD_ORIGINAL: method}


def server_address(host: str | None, scheme: str) -> dict[str, Any]:
    """``server.address``/``server.port`` from a Host header; empty if it is malformed."""
    if not host or len(host) > 255:
        return {}
    name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not name or "]" in port:
        name, port = host, ""
    attributes: dict[str, Any] = {SERVER_ADDRESS: name.strip("[]")}
    if port.isdigit():
        attributes[SERVER_PORT] = int(port)
    elif scheme in _DEFAULT_PORTS:
        attributes[SERVER_PORT] = _DEFAULT_PORTS[scheme]
    return attributes


class ServerSettings:
    """What a server middleware was configured with; shared, never mutated per request."""

    __slots__ = ("agent_name", "allow", "excluded", "trust_incoming")

    def __init__(
        self,
        agent_name: str | None,
        excluded_urls: str | Iterable[str] | None,
        trust_incoming: bool,
        capture_headers: Iterable[str] | None,
    ) -> None:
        self.agent_name = agent_name
        self.excluded = url_matcher(excluded_urls)
        self.trust_incoming = trust_incoming
        self.allow = header_allowlist(capture_headers)

    def is_excluded(self, path: str) -> bool:
        return self.excluded is not None and bool(self.excluded(path))


_context_names: tuple[frozenset[str] | None, frozenset[bytes], frozenset[str]] = (
    None,
    frozenset(),
    frozenset(),
)


def context_header_names() -> tuple[frozenset[bytes], frozenset[str]]:
    """The headers that carry trace context, as ASGI header names and as WSGI environ keys."""
    global _context_names
    fields = context_fields()
    if _context_names[0] is not fields:
        _context_names = (
            fields,
            frozenset(name.encode("latin-1") for name in fields),
            frozenset("HTTP_" + name.upper().replace("-", "_") for name in fields),
        )
    return _context_names[1], _context_names[2]


def received_context(
    settings: ServerSettings, headers: Any, has_context: bool = True
) -> tuple[otel_context.Context, trace.SpanContext | None]:
    """The context a request's work runs in, and the caller's span when it is only linked.

    Trusted callers are continued (remote parent, session/user from baggage, pending handoff);
    untrusted ones start a fresh trace that links to theirs, with their baggage dropped.
    Without any context header (``has_context`` False) the request starts a new trace.
    """
    if not has_context:
        return otel_context.Context(), None
    extracted = extract_context(headers)
    if settings.trust_incoming:
        return continuation(extracted, "http", settings.agent_name), None
    return otel_context.Context(), remote_parent(extracted)


def enrich_existing(
    settings: ServerSettings,
    span: Span,
    headers: Any,
    request_attributes: Mapping[str, Any],
    has_context: bool = True,
) -> otel_context.Context:
    """Add plyra's attributes to a server span another library started for this request, and
    return the current context with the received session/user (and agent) in force."""
    ctx = otel_context.get_current()
    attributes: dict[str, Any] = dict(request_attributes)
    if has_context and settings.trust_incoming:
        # The owner usually extracted the same headers already (its baggage is current).
        extracted = ctx if baggage.get_all(ctx) else extract_context(headers)
        attributes.update(handoff_attributes(extracted, "http", settings.agent_name))
        received = scope_from_baggage(extracted)
        if received is not None:
            ctx = otel_context.set_value(SCOPE_KEY, received, ctx)
            attributes.update(received.attributes)
        ctx = without_handoff(ctx)
    elif has_context:
        log_once(
            "http.untrusted-existing",
            "plyra_trace: trust_incoming=False cannot re-root a server span another library "
            "(FastAPI's own telemetry) already started from the caller's headers; disable it "
            "with FastAPI(telemetry={'tracing': False}) for public endpoints",
            exc_info=False,
        )
        ctx = baggage.clear(ctx)
    if attributes:
        span.set_attributes(attributes)
    if settings.agent_name is not None:
        ctx = with_agent(settings.agent_name, ctx)
    return ctx


class ServerExchange:
    """One request's server span: started on arrival, ended when the response body ends.

    A fresh object per request holds all per-request state, so concurrent requests never share
    it. When another library already opened the server span (``owned`` is False), only the
    request's extra attributes are added to that span and its outcome is left to its owner.
    """

    __slots__ = (
        "chunks",
        "context",
        "ended",
        "failed",
        "first_byte_ns",
        "method",
        "owned",
        "route",
        "settings",
        "span",
        "start_ns",
        "status",
    )

    def __init__(
        self,
        settings: ServerSettings,
        span: Span,
        context: otel_context.Context,
        method: str,
        owned: bool,
    ) -> None:
        self.settings = settings
        self.span = span
        self.context = context
        self.method = method
        self.owned = owned
        self.route: str | None = None
        self.status: int | None = None
        self.chunks = 0
        self.first_byte_ns: int | None = None
        self.start_ns = time.monotonic_ns()
        self.ended = False
        self.failed = False

    @classmethod
    def start(
        cls,
        settings: ServerSettings,
        headers: Any,
        method: str,
        attributes: dict[str, Any],
        has_context: bool = True,
    ) -> ServerExchange:
        """Open the SERVER span for a request whose headers were ``headers``."""
        parent, linked = received_context(settings, headers, has_context)
        scoped = scope_attributes(parent)
        if scoped:
            attributes.update(scoped)
        handoff = take_pending_handoff(parent, remote_parent(parent))
        if handoff:  # recorded at start: spares the span a second, validated attribute write
            attributes.update(handoff)
        if settings.agent_name is not None:
            attributes[sc.AGENT_NAME] = settings.agent_name
        span = _runtime.tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            links=[Link(linked)] if linked is not None else None,
        )
        context = trace.set_span_in_context(span, parent)
        if settings.agent_name is not None:
            context = with_agent(settings.agent_name, context)
        return cls(settings, span, context, method, True)

    @classmethod
    def join(
        cls,
        settings: ServerSettings,
        span: Span,
        headers: Any,
        attributes: dict[str, Any],
        has_context: bool = True,
    ) -> ServerExchange:
        """Enrich the server span another library opened for this request."""
        if settings.agent_name is not None:
            attributes[sc.AGENT_NAME] = settings.agent_name
        context = enrich_existing(settings, span, headers, attributes, has_context)
        return cls(settings, span, context, "", False)

    def response_started(self, status: int, headers: Iterable[tuple[Any, Any]] | None) -> None:
        self.status = status
        if self.settings.allow and headers is not None:
            self.span.set_attributes(header_attributes("response", headers, self.settings.allow))

    def body_chunk(self, size: int) -> None:
        if size:
            self.chunks += 1
            if self.first_byte_ns is None:
                self.first_byte_ns = time.monotonic_ns()

    def _stream_attributes(self) -> dict[str, Any]:
        """Chunk count and time to first byte of a streamed body; none for a body sent in one
        chunk, whose first byte is its last (the span's duration already says when that was)."""
        if self.chunks == 1:
            return {}
        attributes: dict[str, Any] = {CHUNKS: self.chunks}
        if self.first_byte_ns is not None:
            attributes[TIME_TO_FIRST_BYTE] = (self.first_byte_ns - self.start_ns) / 1e6
        return attributes

    def body_done(self) -> None:
        """Record stream attributes on a span another library owns, before it ends it."""
        if not self.owned:
            attributes = self._stream_attributes()
            if attributes:
                self.span.set_attributes(attributes)

    def fail(self, error: BaseException) -> None:
        """Record an exception that escaped the application (the server answers 500 if it
        had not started a response)."""
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            self.span.set_attribute(CANCELLED, True)
            self.failed = True  # the caller went away: not a server error
            return
        self.span.record_exception(error, escaped=True)
        if not self.owned:
            return
        if self.status is None:
            self.status = 500
        self.failed = True
        self.span.set_attribute(ERROR_TYPE, _error_type(error))
        self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))

    def finish(self, incomplete: bool = True) -> None:
        """End an owned span once: name it after the route and set the response outcome."""
        if self.ended:
            return
        self.ended = True
        if not self.owned:
            return
        span = self.span
        attributes = self._stream_attributes()
        if self.route:
            attributes[ROUTE] = self.route
            span.update_name(f"{self.method} {self.route}")
        if self.status is not None:
            attributes[STATUS_CODE] = self.status
            if self.status >= 500 and not self.failed:
                attributes[ERROR_TYPE] = str(self.status)
                span.set_status(Status(StatusCode.ERROR))
        elif incomplete and not self.failed:
            attributes[ERROR_TYPE] = "incomplete_response"
            span.set_status(Status(StatusCode.ERROR, "the application sent no response"))
        _runtime.set_attributes(span, attributes)
        span.end()


def _error_type(error: BaseException) -> str:
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
