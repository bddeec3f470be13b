"""``PlyraWSGIMiddleware``: one SERVER span per WSGI request, carrying the caller's agent handoff.

    app.wsgi_app = PlyraWSGIMiddleware(app.wsgi_app, agent_name="writer")

The span ends when the server closes the response iterable (streamed bodies are timed to their
last chunk, and a response closed without being iterated still ends its span). The request's
context is attached only while the application runs, so nothing leaks to the next request a
reused worker thread serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry import context as otel_context

from plyra_trace._safety import log_once
from plyra_trace.integrations import _http
from plyra_trace.integrations._http import ServerExchange, ServerSettings

__all__ = ["EXCHANGE_KEY", "PlyraWSGIMiddleware"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

# Where the request's exchange lives in the environ, for framework hooks (Flask's signals).
EXCHANGE_KEY = "plyra_trace.exchange"


class PlyraWSGIMiddleware:
    """Trace every request of a WSGI app; options as for the ASGI ``PlyraMiddleware``."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        agent_name: str | None = None,
        excluded_urls: str | Iterable[str] | None = None,
        trust_incoming: bool = True,
        capture_headers: Iterable[str] | None = None,
    ) -> None:
        self.app = app
        self._settings = ServerSettings(agent_name, excluded_urls, trust_incoming, capture_headers)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        exchange = None if EXCHANGE_KEY in environ else _open(self._settings, environ)
        if exchange is None:
            return self.app(environ, start_response)

        def traced_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            try:
                exchange.response_started(int(str(status).split(" ", 1)[0]), headers)
            except Exception:
                log_once("wsgi.status", "plyra_trace: could not read a WSGI response status")
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        token = otel_context.attach(exchange.context)
        try:
            iterable = self.app(environ, traced_start_response)
        except BaseException as error:
            _fail(exchange, error)
            _finish(exchange)
            raise
        finally:
            otel_context.detach(token)
        return _TracedBody(iterable, exchange)


def _open(settings: ServerSettings, environ: Environ) -> ServerExchange | None:
    try:
        path = str(environ.get("SCRIPT_NAME") or "") + str(environ.get("PATH_INFO") or "/")
        if settings.is_excluded(path):
            return None
        headers = [(key, value) for key, value in environ.items() if key.startswith("HTTP_")]
        scheme = str(environ.get("wsgi.url_scheme") or "http")
        method, named = _http.method_attributes(str(environ.get("REQUEST_METHOD") or "GET"))
        attributes: dict[str, Any] = {**named, _http.URL_SCHEME: scheme, _http.URL_PATH: path}
        query = environ.get("QUERY_STRING")
        if query:
            attributes[_http.URL_QUERY] = _http.redact_query(str(query))
        host = environ.get("HTTP_HOST")
        if not host and environ.get("SERVER_NAME"):
            host = f"{environ['SERVER_NAME']}:{environ.get('SERVER_PORT') or ''}".rstrip(":")
        attributes.update(_http.server_address(host, scheme))
        protocol = str(environ.get("SERVER_PROTOCOL") or "")
        if protocol.upper().startswith("HTTP/"):
            attributes[_http.PROTOCOL_VERSION] = protocol[5:]
        if environ.get("HTTP_USER_AGENT"):
            attributes[_http.USER_AGENT] = str(environ["HTTP_USER_AGENT"])
        if environ.get("REMOTE_ADDR"):
            attributes[_http.CLIENT_ADDRESS] = str(environ["REMOTE_ADDR"])
            port = str(environ.get("REMOTE_PORT") or "")
            if port.isdigit():
                attributes[_http.CLIENT_PORT] = int(port)
        if settings.allow:
            attributes.update(_http.header_attributes("request", headers, settings.allow))
        environ_names = _http.context_header_names()[1]
        has_context = any(key in environ_names for key, _ in headers)
        exchange = ServerExchange.start(settings, headers, method, attributes, has_context)
        environ[EXCHANGE_KEY] = exchange
        return exchange
    except Exception:
        log_once("wsgi.start", "plyra_trace: could not trace a WSGI request; it runs untraced")
        return None


def _fail(exchange: ServerExchange, error: BaseException) -> None:
    try:
        exchange.fail(error)
    except Exception:
        log_once("wsgi.fail", "plyra_trace: could not record an exception on a request span")


def _finish(exchange: ServerExchange) -> None:
    try:
        exchange.body_done()
        exchange.finish()
    except Exception:
        log_once("wsgi.end", "plyra_trace: could not end a request span")


class _TracedBody:
    """The application's response iterable, run in the request's context; ends the span when
    the server closes it (iterated fully, partly or not at all)."""

    __slots__ = ("_exchange", "_inner", "_iterator")

    def __init__(self, inner: Iterable[bytes], exchange: ServerExchange) -> None:
        self._inner = inner
        self._exchange = exchange
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        exchange = self._exchange
        token = otel_context.attach(exchange.context)
        try:
            if self._iterator is None:
                self._iterator = iter(self._inner)
            chunk = next(self._iterator)
        except StopIteration:
            raise
        except BaseException as error:
            _fail(exchange, error)
            raise
        finally:
            otel_context.detach(token)
        try:
            exchange.body_chunk(len(chunk))
        except Exception:
            log_once("wsgi.chunk", "plyra_trace: could not count a response chunk")
        return chunk

    def close(self) -> None:
        exchange = self._exchange
        token = otel_context.attach(exchange.context)
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        except BaseException as error:
            _fail(exchange, error)
            raise
        finally:
            otel_context.detach(token)
            _finish(exchange)
