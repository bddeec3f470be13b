"""Cost of the HTTP integrations per request, in one process, no sockets.

Prints per-request times and ratios against the same app without plyra (lower is better):
- ASGI: a small Starlette app and a small FastAPI app called directly (ASGI messages), with and
  without ``PlyraMiddleware``. FastAPI traces itself once a tracer provider exists, so its
  "bare" run already has a SERVER span; the middleware then only enriches it.
- OpenTelemetry's own ASGI/WSGI middleware and httpx instrumentation on the same apps and client,
  when they are installed (they are not project dependencies; run this script from a venv that
  has ``opentelemetry-instrumentation-asgi/-wsgi/-httpx`` to compare).
- WSGI: a Flask app called directly, bare and with ``instrument_app``.
- httpx: a client over ``MockTransport``, bare and wrapped in ``PlyraTransport``.

Spans go to a no-op exporting processor (the SDK pipeline runs, nothing is sent).

Run: uv run python benchmarks/asgi_overhead.py [--requests N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from werkzeug.test import create_environ

import plyra_trace
from plyra_trace import PlyraMiddleware
from plyra_trace.integrations.flask import instrument_app
from plyra_trace.integrations.httpx import PlyraTransport

_HEADERS = [
    (b"host", b"svc.internal"),
    (b"user-agent", b"bench"),
    (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    (b"baggage", b"session.id=s1,plyra.handoff.from=planner,plyra.handoff.reason=bench"),
]


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": list(_HEADERS),
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }


def asgi_per_request(app: Any, path: str, requests: int, rounds: int) -> float:
    """Best-of-rounds microseconds per ASGI request, driven by direct calls on one loop."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def run() -> float:
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(requests):
                await app(_scope(path), receive, send)
            best = min(best, (time.perf_counter() - started) / requests * 1e6)
        return best

    return asyncio.run(run())


def sync_per_call(fn: Callable[[], object], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


def _starlette(instrumented: bool) -> Any:
    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["item_id"]})

    app = Starlette(routes=[Route("/items/{item_id}", item)])
    if instrumented:
        app.add_middleware(PlyraMiddleware, agent_name="bench")
    return app


def _fastapi(instrumented: bool) -> Any:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    if instrumented:
        app.add_middleware(PlyraMiddleware, agent_name="bench")
    return app


def _flask(instrumented: bool) -> Any:
    app = Flask("bench")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    return instrument_app(app, agent_name="bench") if instrumented else app


def _wsgi_call(app: Any) -> Callable[[], object]:
    headers = {k.decode(): v.decode() for k, v in _HEADERS}

    def call() -> object:
        environ = create_environ("/items/3", headers=headers)
        body = app.wsgi_app(environ, lambda status, headers, exc_info=None: None)
        try:
            return b"".join(body)
        finally:
            getattr(body, "close", lambda: None)()

    return call


def report(label: str, bare: float, traced: float) -> None:
    print(
        f"{label:<44} bare {bare:8.1f} us   traced {traced:8.1f} us   ratio {traced / bare:5.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, rounds = args.requests, args.rounds
    handle = plyra_trace.init("bench", console=False)

    path = "/items/3"
    bare = asgi_per_request(_starlette(False), path, n, rounds)
    report("Starlette + PlyraMiddleware", bare, asgi_per_request(_starlette(True), path, n, rounds))
    try:
        from opentelemetry.instrumentation.asgi import (  # type: ignore[import-not-found,unused-ignore]
            OpenTelemetryMiddleware,
        )
    except ImportError:
        print(f"{'Starlette + OpenTelemetry ASGI middleware':<44} (not installed)")
    else:
        otel_app = _starlette(False)
        otel_app.add_middleware(OpenTelemetryMiddleware)
        report(
            "Starlette + OpenTelemetry ASGI middleware",
            bare,
            asgi_per_request(otel_app, path, n, rounds),
        )
    report(
        "FastAPI (own tracing) + PlyraMiddleware",
        asgi_per_request(_fastapi(False), path, n, rounds),
        asgi_per_request(_fastapi(True), path, n, rounds),
    )
    flask_bare = sync_per_call(_wsgi_call(_flask(False)), n, rounds)
    report("Flask + instrument_app", flask_bare, sync_per_call(_wsgi_call(_flask(True)), n, rounds))
    try:
        from opentelemetry.instrumentation.wsgi import (  # type: ignore[import-not-found,unused-ignore]
            OpenTelemetryMiddleware as OTelWSGIMiddleware,
        )
    except ImportError:
        print(f"{'Flask + OpenTelemetry WSGI middleware':<44} (not installed)")
    else:
        otel_flask = _flask(False)
        otel_flask.wsgi_app = OTelWSGIMiddleware(otel_flask.wsgi_app)  # type: ignore[method-assign,unused-ignore]
        report(
            "Flask + OpenTelemetry WSGI middleware",
            flask_bare,
            sync_per_call(_wsgi_call(otel_flask), n, rounds),
        )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"ok")

    plain = httpx.Client(transport=httpx.MockTransport(handler))
    traced = httpx.Client(transport=PlyraTransport(httpx.MockTransport(handler)))
    plain_cost = sync_per_call(lambda: plain.get("http://svc.internal/x"), n, rounds)
    report(
        "httpx Client + PlyraTransport",
        plain_cost,
        sync_per_call(lambda: traced.get("http://svc.internal/x"), n, rounds),
    )
    try:
        from opentelemetry.instrumentation.httpx import (  # type: ignore[import-not-found,unused-ignore]
            HTTPXClientInstrumentor,
        )
    except ImportError:
        print(f"{'httpx Client + OpenTelemetry httpx':<44} (not installed)")
    else:
        otel_client = httpx.Client(transport=httpx.MockTransport(handler))
        HTTPXClientInstrumentor.instrument_client(otel_client)
        report(
            "httpx Client + OpenTelemetry httpx",
            plain_cost,
            sync_per_call(lambda: otel_client.get("http://svc.internal/x"), n, rounds),
        )
    handle.shutdown()


if __name__ == "__main__":
    main()
