"""``instrument_app(app)``: Flask requests as SERVER spans named after their URL rule.

Wraps ``app.wsgi_app`` with ``PlyraWSGIMiddleware`` and uses Flask's own signals: the matched
rule names the span, and ``got_request_exception`` records the exception Flask turns into a 500
(WSGI middleware alone would only see the 500).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask, got_request_exception, request, request_started

from plyra_trace._safety import log_once
from plyra_trace.integrations.wsgi import EXCHANGE_KEY, PlyraWSGIMiddleware

__all__ = ["instrument_app"]

_MARK = "_plyra_trace_instrumented"


def instrument_app(
    app: Flask,
    *,
    agent_name: str | None = None,
    excluded_urls: str | Iterable[str] | None = None,
    trust_incoming: bool = True,
    capture_headers: Iterable[str] | None = None,
) -> Flask:
    """Trace every request of ``app`` (once; calling again changes nothing) and return it."""
    if getattr(app, _MARK, False):
        return app
    app.wsgi_app = PlyraWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        agent_name=agent_name,
        excluded_urls=excluded_urls,
        trust_incoming=trust_incoming,
        capture_headers=capture_headers,
    )
    request_started.connect(_route_matched, app, weak=False)
    got_request_exception.connect(_exception_raised, app, weak=False)
    setattr(app, _MARK, True)
    return app


def _route_matched(sender: Flask, **_: Any) -> None:
    """Name the span after the URL rule that matched, e.g. ``GET /items/<int:item_id>``."""
    try:
        exchange = request.environ.get(EXCHANGE_KEY)
        rule = request.url_rule
        if exchange is not None and rule is not None:
            exchange.route = rule.rule
    except Exception:
        log_once("flask.route", "plyra_trace: could not read the matched Flask route")


def _exception_raised(sender: Flask, exception: BaseException, **_: Any) -> None:
    """Record the handler's exception on the request span (Flask answers 500 itself)."""
    try:
        exchange = request.environ.get(EXCHANGE_KEY)
        if exchange is not None:
            exchange.fail(exception)
    except Exception:
        log_once("flask.exception", "plyra_trace: could not record a Flask exception")
