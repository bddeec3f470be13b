"""httpx / httpx2 transports: one CLIENT span per request, and the caller's trace, session, user
and handoff intent carried in the request headers.

    client = instrument_client(httpx.Client(), propagate_to=["*.internal"])
    client = httpx2.AsyncClient(transport=AsyncPlyraTransport(httpx2.AsyncHTTPTransport()))

The span ends when the response body has been read or closed (streamed responses too). With
``propagate_to`` set, context is only sent to the listed hosts, never to third parties.
"""

from __future__ import annotations

import asyncio
import fnmatch
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from plyra_trace import _runtime
from plyra_trace._context import scope_attributes
from plyra_trace._propagation import inject_context
from plyra_trace._safety import log_once
from plyra_trace.integrations import _http

__all__ = ["AsyncPlyraTransport", "PlyraTransport", "instrument_client"]

if TYPE_CHECKING:  # for type checkers the transports are both libraries' transports
    import httpx as _httpx
    import httpx2 as _httpx2

    class _SyncBase(_httpx.BaseTransport, _httpx2.BaseTransport):  # type: ignore[misc]
        pass

    class _AsyncBase(_httpx.AsyncBaseTransport, _httpx2.AsyncBaseTransport):  # type: ignore[misc]
        pass

else:  # at run time neither library checks the type, and neither needs importing
    _SyncBase = object
    _AsyncBase = object

# OpenTelemetry's HTTP instrumentations (opentelemetry-instrumentation-httpx among them) stand
# aside while this key is set, so a request traced here never gets a second CLIENT span.
_SUPPRESS_HTTP = otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY


class _Hosts:
    """The ``propagate_to`` allowlist: host names or ``host:port``, ``*`` wildcards allowed."""

    __slots__ = ("_exact", "_patterns")

    def __init__(self, hosts: Iterable[str] | None) -> None:
        self._exact: frozenset[str] | None = None
        self._patterns: tuple[str, ...] = ()
        if hosts is None:
            return
        if isinstance(hosts, str):
            hosts = [hosts]
        names = [host.strip().lower() for host in hosts if host and host.strip()]
        self._exact = frozenset(name for name in names if "*" not in name and "?" not in name)
        self._patterns = tuple(name for name in names if name not in self._exact)

    def allows(self, host: str, port: int | None) -> bool:
        if self._exact is None:
            return True
        host = host.lower()
        candidates = (host, f"{host}:{port}") if port is not None else (host,)
        return any(
            name in self._exact or any(fnmatch.fnmatchcase(name, p) for p in self._patterns)
            for name in candidates
        )


class _ClientCall:
    """One request's CLIENT span, ended once when the response body is done."""

    __slots__ = ("ended", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.ended = False

    @classmethod
    def begin(cls, request: Any, hosts: _Hosts, agent_name: str | None) -> _ClientCall | None:
        """Start the span and inject context into ``request``; None to leave it untraced."""
        try:
            parent = otel_context.get_current()
            if otel_context.get_value(_SUPPRESS_HTTP, parent):
                return None
            url = request.url
            if _traced_by_otel(parent):  # its span is the one; add the handoff to its headers
                if hosts.allows(str(url.host), url.port):
                    _inject(request, parent, agent_name)
                return None
            method, named = _http.method_attributes(str(request.method))
            attributes: dict[str, Any] = dict(named)
            host = str(url.host)
            port = url.port
            scheme = str(url.scheme)
            attributes[_http.URL_FULL] = _full_url(url)
            attributes[_http.SERVER_ADDRESS] = host
            attributes[_http.SERVER_PORT] = port if port is not None else _default_port(scheme)
            scoped = scope_attributes(parent)
            if scoped:
                attributes.update(scoped)
            span = _runtime.tracer.start_span(
                method, context=parent, kind=SpanKind.CLIENT, attributes=attributes
            )
            if hosts.allows(host, port):
                _inject(request, trace.set_span_in_context(span, parent), agent_name)
            return cls(span)
        except Exception:
            log_once(
                "httpx.start", "plyra_trace: could not trace an httpx request; it runs untraced"
            )
            return None

    def responded(self, response: Any) -> None:
        try:
            status = int(response.status_code)
            attributes: dict[str, Any] = {_http.STATUS_CODE: status}
            version = (getattr(response, "extensions", None) or {}).get("http_version")
            if isinstance(version, bytes) and version.upper().startswith(b"HTTP/"):
                attributes[_http.PROTOCOL_VERSION] = version[5:].decode("ascii", "replace")
            if status >= 400:
                attributes[_http.ERROR_TYPE] = str(status)
                self.span.set_status(Status(StatusCode.ERROR))
            self.span.set_attributes(attributes)
        except Exception:
            log_once("httpx.response", "plyra_trace: could not record an httpx response")

    def fail(self, error: BaseException) -> None:
        if self.ended:
            return
        try:
            self.span.record_exception(error, escaped=True)
            self.span.set_attribute(_http.ERROR_TYPE, _error_type(error))
            self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        except Exception:
            log_once("httpx.fail", "plyra_trace: could not record an httpx error")
        self.end()

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            self.span.end()
        except Exception:
            log_once("httpx.end", "plyra_trace: could not end an httpx span")


def _inject(request: Any, ctx: otel_context.Context, agent_name: str | None) -> None:
    """Write ``ctx``'s trace context, session, user and handoff into the request headers."""
    carrier: dict[str, str] = {}
    token = otel_context.attach(ctx)
    try:
        inject_context(carrier, agent_name=agent_name, protocol="http")
    finally:
        otel_context.detach(token)
    for key, value in carrier.items():
        request.headers[key] = value


def _traced_by_otel(ctx: otel_context.Context) -> bool:
    """Whether OpenTelemetry's own httpx instrumentation already opened a CLIENT span here."""
    span = trace.get_current_span(ctx)
    scope = getattr(span, "instrumentation_scope", None)
    return (
        getattr(span, "kind", None) is SpanKind.CLIENT
        and scope is not None
        and "httpx" in str(getattr(scope, "name", ""))
    )


def _default_port(scheme: str) -> int:
    return 443 if scheme in ("https", "wss") else 80


def _full_url(url: Any) -> str:
    """The request URL without user info and with credential-like query values redacted."""
    port = f":{url.port}" if url.port is not None else ""
    host = f"[{url.host}]" if ":" in str(url.host) else str(url.host)
    path = str(url.path)
    query = url.query.decode("latin-1") if isinstance(url.query, bytes) else str(url.query)
    return f"{url.scheme}://{host}{port}{path}" + (f"?{_http.redact_query(query)}" if query else "")


def _error_type(error: BaseException) -> str:
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


# --- response bodies ------------------------------------------------------------------------------


class _SyncBody:
    """Iterates the inner response stream; the span ends when it is exhausted or closed."""

    def __init__(self, inner: Any, call: _ClientCall) -> None:
        self._inner = inner
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except GeneratorExit:  # the reader stopped early: not an error
            self._call.end()
            raise
        except BaseException as error:
            self._call.fail(error)
            raise
        self._call.end()

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._call.end()


class _AsyncBody:
    """The async twin of ``_SyncBody``."""

    def __init__(self, inner: Any, call: _ClientCall) -> None:
        self._inner = inner
        self._call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except (GeneratorExit, asyncio.CancelledError):  # stopped early: not an error
            self._call.end()
            raise
        except BaseException as error:
            self._call.fail(error)
            raise
        self._call.end()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._call.end()


_body_types: dict[tuple[str, bool], type] = {}


def _body_type(request: Any, asynchronous: bool) -> type:
    """A body class that is also the request's library's (httpx or httpx2) byte stream type,
    which its ``Response`` checks before iterating."""
    library = type(request).__module__.split(".", 1)[0]
    key = (library, asynchronous)
    found = _body_types.get(key)
    if found is None:
        module = sys.modules[library]
        if asynchronous:
            found = type("PlyraAsyncByteStream", (_AsyncBody, module.AsyncByteStream), {})
        else:
            found = type("PlyraSyncByteStream", (_SyncBody, module.SyncByteStream), {})
        _body_types[key] = found
    return found


def _wrap_body(request: Any, response: Any, call: _ClientCall, asynchronous: bool) -> None:
    try:
        if getattr(response, "is_closed", False):  # built from bytes: already read and closed
            call.end()
            return
        response.stream = _body_type(request, asynchronous)(response.stream, call)
    except Exception:
        log_once("httpx.body", "plyra_trace: could not follow an httpx response body")
        call.end()


# --- transports -----------------------------------------------------------------------------------


class PlyraTransport(_SyncBase):
    """A sync httpx/httpx2 transport that traces the requests it passes to ``transport``.

    ``transport`` defaults to ``httpx.HTTPTransport()``; pass ``httpx2.HTTPTransport()`` (or any
    transport, such as ``MockTransport``) to use another. ``agent_name`` overrides the calling
    agent named in the handoff (by default the ``@agent`` running at the call).
    """

    def __init__(
        self,
        transport: Any = None,
        *,
        propagate_to: Iterable[str] | None = None,
        agent_name: str | None = None,
    ) -> None:
        if transport is None:
            import httpx

            transport = httpx.HTTPTransport()
        self.transport = transport
        self._hosts = _Hosts(propagate_to)
        self._agent_name = agent_name

    def handle_request(self, request: Any) -> Any:
        call = _ClientCall.begin(request, self._hosts, self._agent_name)
        if call is None:
            return self.transport.handle_request(request)
        token = otel_context.attach(otel_context.set_value(_SUPPRESS_HTTP, True))
        try:
            response = self.transport.handle_request(request)
        except BaseException as error:
            call.fail(error)
            raise
        finally:
            otel_context.detach(token)
        call.responded(response)
        _wrap_body(request, response, call, asynchronous=False)
        return response

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> PlyraTransport:
        self.transport.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.transport.__exit__(*exc_info)


class AsyncPlyraTransport(_AsyncBase):
    """The async twin of ``PlyraTransport`` (default inner: ``httpx.AsyncHTTPTransport()``)."""

    def __init__(
        self,
        transport: Any = None,
        *,
        propagate_to: Iterable[str] | None = None,
        agent_name: str | None = None,
    ) -> None:
        if transport is None:
            import httpx

            transport = httpx.AsyncHTTPTransport()
        self.transport = transport
        self._hosts = _Hosts(propagate_to)
        self._agent_name = agent_name

    async def handle_async_request(self, request: Any) -> Any:
        call = _ClientCall.begin(request, self._hosts, self._agent_name)
        if call is None:
            return await self.transport.handle_async_request(request)
        token = otel_context.attach(otel_context.set_value(_SUPPRESS_HTTP, True))
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException as error:
            call.fail(error)
            raise
        finally:
            otel_context.detach(token)
        call.responded(response)
        _wrap_body(request, response, call, asynchronous=True)
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> AsyncPlyraTransport:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.transport.__aexit__(*exc_info)


def instrument_client(
    client: Any, *, propagate_to: Iterable[str] | None = None, agent_name: str | None = None
) -> Any:
    """Trace an existing ``httpx``/``httpx2`` ``Client`` or ``AsyncClient`` in place, keeping
    its own transports (proxies, TLS and limits keep working); returns the client."""
    wrapper: type[PlyraTransport] | type[AsyncPlyraTransport]
    wrapper = AsyncPlyraTransport if hasattr(client, "aclose") else PlyraTransport

    def wrap(transport: Any) -> Any:
        if transport is None or isinstance(transport, PlyraTransport | AsyncPlyraTransport):
            return transport
        return wrapper(transport, propagate_to=propagate_to, agent_name=agent_name)

    client._transport = wrap(client._transport)
    mounts = getattr(client, "_mounts", None)
    if isinstance(mounts, dict):
        client._mounts = {pattern: wrap(transport) for pattern, transport in mounts.items()}
    return client
