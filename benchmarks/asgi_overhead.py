"""Cost of the HTTP integrations per request, in one process, no sockets.

ASGI (the ratios the targets are about; each the median of per-round ratios, the apps taking
turns within each round, time = the loop thread's CPU time, so a shared machine's load is
mostly left out; run on a busy machine, expect +-5%):
- Starlette and FastAPI-with-its-tracing-off apps, untraced, with ``PlyraMiddleware`` and with
  Starlette's own ``OpenTelemetryMiddleware`` on a **bare provider** (a TracerProvider of its own
  whose only processor does nothing: the cheapest spans). Target: PlyraMiddleware no costlier.
- FastAPI tracing itself, on a bare provider and on plyra's, and with ``PlyraMiddleware`` (which
  then enriches FastAPI's SERVER span instead of opening one). Target: <= 1.30x FastAPI's own
  tracing on the bare provider. ``framework_spans=False`` shown for comparison.
- Requests carry ``traceparent`` and ``baggage`` (session, handoff), so extraction is measured.

Then (skipped with ``--asgi-only``), best of rounds: WSGI (a Flask app, bare and with
``instrument_app``) and httpx (a client over ``MockTransport``, bare and with
``PlyraTransport``), and OpenTelemetry's own WSGI/httpx instrumentation when installed (not
project dependencies; run from a venv that has ``opentelemetry-instrumentation-wsgi/-httpx``).

Run: uv run python benchmarks/asgi_overhead.py [--requests N] [--rounds N] [--asgi-only]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI
from flask import Flask
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from starlette.applications import Starlette
from starlette.middleware.opentelemetry import OpenTelemetryMiddleware
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


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


def asgi_interleaved(
    apps: dict[str, Any], path: str, requests: int, rounds: int
) -> dict[str, list[float]]:
    """Per-round CPU microseconds per request of every app, driven by direct calls on one loop;
    the apps take turns within each round, so load elsewhere on the machine hits all of them alike
    (and the thread's CPU time leaves out waiting for a core)."""

    async def run() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(rounds):
            for name, app in apps.items():
                started = time.thread_time()
                for _ in range(requests):
                    await app(_scope(path), _receive, _send)
                times[name].append((time.thread_time() - started) / requests * 1e6)
        return times

    return asyncio.run(run())


def median_ratio(times: dict[str, list[float]], measured: str, baseline: str) -> float:
    """Median over rounds of measured/baseline, both taken in the same round."""
    pairs = zip(times[measured], times[baseline], strict=True)
    return statistics.median(a / b for a, b in pairs)


def bare_provider() -> TracerProvider:
    """A provider of its own whose only processor does nothing: the cheapest spans."""
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())
    return provider


def sync_per_call(fn: Callable[[], object], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


def _middleware(app: Any, middleware: str | None, provider: TracerProvider) -> Any:
    """Add the named tracing middleware: "plyra", "starlette" (Starlette's own OpenTelemetry
    middleware, on the bare provider) or None."""
    if middleware == "plyra":
        app.add_middleware(PlyraMiddleware, agent_name="bench")
    elif middleware == "starlette":
        app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)
    return app


def _starlette(middleware: str | None, provider: TracerProvider) -> Any:
    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["item_id"]})

    app = Starlette(routes=[Route("/items/{item_id}", item)])
    return _middleware(app, middleware, provider)


def _fastapi(
    middleware: str | None, provider: TracerProvider, telemetry: dict[str, Any] | None = None
) -> Any:
    app = FastAPI(telemetry=telemetry)  # type: ignore[arg-type]

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    return _middleware(app, middleware, provider)


def _fastapi_no_operations() -> Any:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.add_middleware(PlyraMiddleware, agent_name="bench", framework_spans=False)
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
    parser.add_argument("--asgi-only", action="store_true", help="skip Flask and httpx")
    args = parser.parse_args()
    n, rounds = args.requests, args.rounds
    handle = plyra_trace.init("bench", console=False)
    bare = bare_provider()
    off = {"tracing": False}
    apps = {
        "Starlette, untraced": _starlette(None, bare),
        "Starlette + PlyraMiddleware": _starlette("plyra", bare),
        "Starlette + Starlette's OTel middleware (bare)": _starlette("starlette", bare),
        "FastAPI tracing off, untraced": _fastapi(None, bare, off),
        "FastAPI tracing off + PlyraMiddleware": _fastapi("plyra", bare, off),
        "FastAPI tracing off + Starlette's OTel (bare)": _fastapi("starlette", bare, off),
        "FastAPI own tracing (bare provider)": _fastapi(None, bare, {"tracer_provider": bare}),
        "FastAPI own tracing (plyra's provider)": _fastapi(None, bare),
        "FastAPI own tracing + PlyraMiddleware": _fastapi("plyra", bare),
        "FastAPI + PlyraMiddleware, framework_spans=False": _fastapi_no_operations(),
    }
    asgi_interleaved(apps, "/items/3", 100, 2)  # warm-up
    times = asgi_interleaved(apps, "/items/3", n, rounds)
    for name, values in times.items():
        print(f"{name:<52} {min(values):8.1f} us/request (best)")
    print(f"\n(ratios: medians of {rounds} interleaved rounds of {n} requests; busy machine)")
    rows = [
        ("Starlette + PlyraMiddleware", "Starlette, untraced", "<= Starlette's OTel"),
        ("Starlette + Starlette's OTel middleware (bare)", "Starlette, untraced", ""),
        (
            "FastAPI tracing off + PlyraMiddleware",
            "FastAPI tracing off, untraced",
            "<= Starlette's OTel",
        ),
        ("FastAPI tracing off + Starlette's OTel (bare)", "FastAPI tracing off, untraced", ""),
        ("Starlette + PlyraMiddleware", "Starlette + Starlette's OTel middleware (bare)", "<= 1"),
        (
            "FastAPI tracing off + PlyraMiddleware",
            "FastAPI tracing off + Starlette's OTel (bare)",
            "<= 1",
        ),
        ("FastAPI own tracing (bare provider)", "FastAPI tracing off, untraced", ""),
        (
            "FastAPI own tracing + PlyraMiddleware",
            "FastAPI own tracing (bare provider)",
            "<= 1.30x",
        ),
        ("FastAPI own tracing + PlyraMiddleware", "FastAPI own tracing (plyra's provider)", ""),
        (
            "FastAPI + PlyraMiddleware, framework_spans=False",
            "FastAPI own tracing (bare provider)",
            "",
        ),
    ]
    for measured, baseline, target in rows:
        label = f"{measured} / {baseline}"
        print(f"{label:<100} {median_ratio(times, measured, baseline):5.2f}x  {target}")
    print()
    if args.asgi_only:
        handle.shutdown()
        return

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
