"""Hand-written MCP clients for tests: JSON-RPC with any ``_meta`` at all, over stdio or HTTP.

mcp's own client validates and rewrites ``_meta`` (and injects trace context); these send exactly
what a test gives them, the way an unknown third-party client might.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_VERSION = "2025-11-25"  # a handshake-era revision: initialize, then plain requests
_INITIALIZE = {
    "protocolVersion": PROTOCOL_VERSION,
    "capabilities": {},
    "clientInfo": {"name": "raw-test-client", "version": "1"},
}


def server_env(otlp_endpoint: str | None, service: str = "tools-svc") -> dict[str, str]:
    """What a ``tests.integrations.mcp_server`` child needs: PATH, PYTHONPATH, where to export."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    if otlp_endpoint is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_endpoint
        env["OTEL_SERVICE_NAME"] = service
    return env


class RawStdio:
    """An MCP server subprocess spoken to in raw newline-delimited JSON-RPC over stdio."""

    def __init__(
        self, mode: str, otlp_endpoint: str | None = None, service: str = "tools-svc"
    ) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integrations.mcp_server", mode],
            cwd=ROOT,
            env=server_env(otlp_endpoint, service),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._lines: Queue[str] = Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def _write(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def request(self, method: str, params: Any, timeout: float = 30) -> dict[str, Any]:
        """Send one request; return its JSON-RPC response (result or error) without the id."""
        self._next_id += 1
        request_id = self._next_id
        self._write({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        while True:
            try:
                message = json.loads(self._lines.get(timeout=timeout))
            except Empty:
                raise AssertionError(f"no response to {method} within {timeout}s") from None
            if message.get("id") == request_id:
                message.pop("id")
                return dict(message)

    def initialize(self) -> dict[str, Any]:
        response = self.request("initialize", _INITIALIZE)
        self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return response

    def close(self) -> None:
        """Close stdin (the server's cue to stop), then make sure the process is gone."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(5)


class RawHttp:
    """A streamable HTTP MCP session driven by plain httpx POSTs (no trace headers)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(timeout=30)
        self.session_id: str | None = None
        self._next_id = 0

    def _post(self, message: dict[str, Any]) -> httpx.Response:
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
        }
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
            headers["mcp-protocol-version"] = PROTOCOL_VERSION
        return self.client.post(self.url, json=message, headers=headers)

    def request(self, method: str, params: Any) -> dict[str, Any]:
        self._next_id += 1
        response = self._post(
            {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}
        )
        response.raise_for_status()
        self.session_id = response.headers.get("mcp-session-id", self.session_id)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            for line in response.text.splitlines():
                if line.startswith("data:") and line[5:].strip():
                    message = json.loads(line[5:])
                    if message.get("id") == self._next_id:
                        return dict(message)
            raise AssertionError(f"no response to {method} in the event stream")
        return dict(response.json())

    def initialize(self) -> dict[str, Any]:
        response = self.request("initialize", _INITIALIZE)
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return response

    def close(self) -> None:
        if self.session_id is not None:
            headers = {"mcp-session-id": self.session_id, "mcp-protocol-version": PROTOCOL_VERSION}
            self.client.delete(self.url, headers=headers)
        self.client.close()
