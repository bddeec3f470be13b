"""The Starlette application: OTLP/HTTP ingest, the JSON API, the live stream and the UI root."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from plyra_trace.collector import api
from plyra_trace.collector.config import CollectorConfig
from plyra_trace.collector.openapi import openapi
from plyra_trace.collector.otlp_http import export_traces
from plyra_trace.collector.runtime import Runtime
from plyra_trace.collector.storage import Storage

_PLACEHOLDER = """<!doctype html>
<html><head><meta charset="utf-8"><title>plyra-trace</title></head>
<body><h1>plyra-trace collector</h1>
<p>Send OTLP to <code>/v1/traces</code>; the JSON API lives under <code>/api/v1/</code>
(<a href="/api/v1/openapi.json">OpenAPI</a>). The web UI will be served here.</p></body></html>
"""


async def _index(request: Request) -> Response:
    """Placeholder page until the web UI is served at /."""
    return HTMLResponse(_PLACEHOLDER)


async def _bad_request(request: Request, exc: Exception) -> Response:
    return api.JSON({"error": str(exc)}, status_code=400)


def create_app(config: CollectorConfig, storage: Storage | None = None) -> Starlette:
    """A collector app; storage and writer start with the app's lifespan and stop with it."""
    routes: list[Any] = [
        Route("/", _index),
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
        exception_handlers={api.BadRequest: _bad_request},
    )
