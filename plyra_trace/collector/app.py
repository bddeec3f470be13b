"""The Starlette application: OTLP/HTTP ingest, the JSON API, the live stream and the web UI."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request, cookie_parser
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from plyra_trace.collector import api, session
from plyra_trace.collector.auth import (
    AUTHENTICATED,
    SESSION,
    SESSION_COOKIE,
    session_valid,
    token_from,
    verify,
)
from plyra_trace.collector.config import CollectorConfig
from plyra_trace.collector.hosts import HostCheckMiddleware, is_loopback
from plyra_trace.collector.openapi import openapi
from plyra_trace.collector.otlp_http import export_live, export_traces
from plyra_trace.collector.runtime import Runtime
from plyra_trace.collector.session import PUBLIC_PATHS
from plyra_trace.collector.storage import Storage, StorageUnavailable
from plyra_trace.ui import ui_routes

_log = logging.getLogger(__name__)


class AuthMiddleware:
    """Checks API keys on /v1/ and /api/ paths.

    A presented key is always checked (a wrong key is 401). Keys are required once any active
    key exists (or the config demands them); the UI's API calls and stream may present the
    session cookie instead (never OTLP ingest). Sign-in and liveness are public.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(("/v1/", "/api/")):
            await self.app(scope, receive, send)
            return
        try:
            verdict = await _verdict(scope, path)
        except Exception:  # the store could not be asked: never a 500, never a pass
            _log.warning("could not check API keys; answering 503", exc_info=True)
            await _refuse(503, "storage unavailable; retry later", scope, receive, send)
            return
        if isinstance(verdict, str):
            await _refuse(401, verdict, scope, receive, send)
            return
        scope[AUTHENTICATED] = verdict
        await self.app(scope, receive, send)


async def _verdict(scope: Scope, path: str) -> bool | str:
    """True/False: let in (with or without access to data); a string: refuse (401) for it."""
    runtime: Runtime = scope["app"].state.runtime
    headers = Headers(scope=scope)
    token = token_from(headers.get("authorization"), headers.get("x-api-key"))
    if token is not None:
        return (
            True if await run_in_threadpool(verify, runtime.storage, token) else "invalid API key"
        )
    cookie = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
    if (
        cookie
        and path.startswith("/api/")
        and await run_in_threadpool(session_valid, runtime.storage, cookie)
    ):
        scope[SESSION] = True
        return True
    required = runtime.keys.cached()
    if required is None:
        required = await run_in_threadpool(runtime.keys.required)
    if not required or path in PUBLIC_PATHS:
        return not required
    return "an API key is required"


async def _refuse(status: int, reason: str, scope: Scope, receive: Receive, send: Send) -> None:
    headers = {"www-authenticate": "Bearer"} if status == 401 else {"retry-after": "1"}
    response = api.JSON({"error": reason}, status_code=status, headers=headers)
    await response(scope, receive, send)


async def _bad_request(request: Request, exc: Exception) -> Response:
    return api.JSON({"error": str(exc)}, status_code=400)


async def _unavailable(request: Request, exc: Exception) -> Response:
    """The database is unreachable: 503 with a retry hint (the pool reconnects by itself)."""
    return api.JSON(
        {"error": "storage unavailable; retry later"}, status_code=503, headers={"retry-after": "1"}
    )


def _middleware(config: CollectorConfig) -> list[Middleware]:
    """Host check (outermost, where it applies), then keys."""
    stack = [Middleware(AuthMiddleware)]
    if is_loopback(config.host) or config.open_access:
        stack.insert(0, Middleware(HostCheckMiddleware, allowed=config.allowed_hosts))
    return stack


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and methods: JSON like every other API answer (plain text for the UI)."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith(("/api/", "/v1/")):
        return PlainTextResponse(exc.detail, exc.status_code, headers=exc.headers)
    return api.JSON({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(config: CollectorConfig, storage: Storage | None = None) -> Starlette:
    """A collector app; storage and writer start with the app's lifespan and stop with it."""
    routes: list[Any] = [
        *ui_routes(),
        Route("/v1/traces", export_traces, methods=["POST"]),
        Route("/v1/live", export_live, methods=["POST"]),
        *api.ROUTES,
        *session.ROUTES,
    ]

    async def _openapi(request: Request) -> Response:
        """The OpenAPI description of this API."""
        return api.JSON(openapi(routes))

    routes.append(Route("/api/v1/openapi.json", _openapi))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = Runtime.start(config, storage)
        app.state.runtime = runtime
        threading.Thread(target=runtime.normaliser.warm_prices, daemon=True).start()
        grpc_server = None
        if config.grpc_port is not None:
            from plyra_trace.collector.grpc import start_grpc

            grpc_server = start_grpc(runtime, config.host, config.grpc_port)
        try:
            yield
        finally:
            if grpc_server is not None:
                grpc_server.stop(grace=1.0).wait(2.0)
            runtime.stop()

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=_middleware(config),
        exception_handlers={
            api.BadRequest: _bad_request,
            HTTPException: _http_error,
            StorageUnavailable: _unavailable,
        },
    )
