"""The Starlette application: OTLP/HTTP ingest, the JSON API, the live stream and the web UI."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from plyra_trace.collector import api
from plyra_trace.collector.auth import token_from, verify
from plyra_trace.collector.config import CollectorConfig
from plyra_trace.collector.openapi import openapi
from plyra_trace.collector.otlp_http import export_traces
from plyra_trace.collector.runtime import Runtime
from plyra_trace.collector.storage import Storage
from plyra_trace.ui import ui_routes


class AuthMiddleware:
    """Checks API keys on /v1/ and /api/ paths; keys are required only when the config says so.

    A presented key is always checked (a wrong key is 401 even where keys are optional). Browsers'
    EventSource cannot set headers, so the stream also takes ``?api_key=``.
    """

    def __init__(self, app: ASGIApp, required: bool) -> None:
        self.app = app
        self.required = required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(("/v1/", "/api/")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        token = token_from(headers.get("authorization"), headers.get("x-api-key"))
        if token is None and path == "/api/v1/stream":
            token = QueryParams(scope.get("query_string", b"")).get("api_key")
        if token is None and not self.required:
            await self.app(scope, receive, send)
            return
        runtime: Runtime = scope["app"].state.runtime
        if token is not None and await run_in_threadpool(verify, runtime.storage, token):
            await self.app(scope, receive, send)
            return
        reason = "invalid API key" if token is not None else "an API key is required"
        response = api.JSON(
            {"error": reason}, status_code=401, headers={"www-authenticate": "Bearer"}
        )
        await response(scope, receive, send)


async def _bad_request(request: Request, exc: Exception) -> Response:
    return api.JSON({"error": str(exc)}, status_code=400)


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
        *api.ROUTES,
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
        middleware=[Middleware(AuthMiddleware, required=config.require_keys)],
        exception_handlers={api.BadRequest: _bad_request, HTTPException: _http_error},
    )
