"""Two real services for the cross-process HTTP test, each in its own process exporting OTLP.

    python -m tests.integrations.http_e2e_services flask|fastapi <otlp-endpoint> [downstream-url]

Prints ``PORT <n>`` once it listens on 127.0.0.1, and flushes its spans on SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from typing import Any

import httpx

import plyra_trace


def _writer_service(endpoint: str) -> None:
    from flask import Flask
    from werkzeug.serving import make_server

    from plyra_trace.integrations.flask import instrument_app

    handle = plyra_trace.init(project="e2e", service_name="writer-svc", endpoint=endpoint)
    app = Flask("writer")

    @plyra_trace.agent(name="writer")
    def write(topic: str) -> str:
        return f"an article about {topic}"

    @app.get("/write/<topic>")
    def write_route(topic: str) -> str:
        return write(topic)

    instrument_app(app, agent_name="writer")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    _on_term(lambda: threading.Thread(target=server.shutdown).start())
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever(poll_interval=0.05)
    handle.shutdown()


def _researcher_service(endpoint: str, writer_url: str) -> None:
    import uvicorn
    from fastapi import FastAPI

    from plyra_trace import PlyraMiddleware
    from plyra_trace.integrations.httpx import AsyncPlyraTransport

    handle = plyra_trace.init(project="e2e", service_name="researcher-svc", endpoint=endpoint)
    app = FastAPI()
    client = httpx.AsyncClient(transport=AsyncPlyraTransport(), base_url=writer_url)

    @plyra_trace.agent(name="researcher")
    async def research(topic: str) -> str:
        with plyra_trace.handoff(to="writer", reason="write it up"):
            response = await client.get(f"/write/{topic}")
        return response.text

    @app.get("/research/{topic}")
    async def research_route(topic: str) -> dict[str, Any]:
        return {"article": await research(topic)}

    app.add_middleware(PlyraMiddleware, agent_name="researcher")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    _on_term(lambda: setattr(server, "should_exit", True))
    server.run(sockets=[sock])
    handle.shutdown()


def _on_term(stop: Any) -> None:
    signal.signal(signal.SIGTERM, lambda *_: stop())


if __name__ == "__main__":
    if sys.argv[1] == "flask":
        _writer_service(sys.argv[2])
    else:
        _researcher_service(sys.argv[2], sys.argv[3])
