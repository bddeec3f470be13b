"""A FastAPI service under uvicorn whose spans only the lifespan-shutdown flush can deliver:
the export timer is a minute and plyra's SIGTERM hook is off (``python -m ... <otlp-url>``)."""

from __future__ import annotations

import socket
import sys

import uvicorn
from fastapi import FastAPI

import plyra_trace
from plyra_trace import PlyraMiddleware

plyra_trace.init(
    "shutdown",
    service_name="gateway",
    endpoint=sys.argv[1],
    console=False,
    schedule_delay_millis=60_000,
    flush_on_sigterm=False,
)
app = FastAPI()
app.add_middleware(PlyraMiddleware, agent_name="gateway")


@plyra_trace.agent(name="gateway")
def answer(question: str) -> dict[str, str]:
    return {"answer": question}


@app.post("/ask")
def ask(body: dict[str, str]) -> dict[str, str]:
    return answer(body["question"])


if __name__ == "__main__":
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    print("PORT", port, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
