"""``plyra-trace serve`` in a subprocess: started, waited for (until health answers), stopped."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.collector.conftest import free_port


class Served:
    """A collector process on 127.0.0.1; ``url`` is its base URL."""

    def __init__(self, db: str, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plyra_trace",
                "serve",
                "--port",
                str(self.port),
                "--db",
                db,
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                health = httpx.get(f"{self.url}/api/v1/health", timeout=2)
                if health.status_code in (200, 401):  # up (401: keys are required)
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        output = self.process.stdout.read().decode() if self.process.stdout else ""
        raise RuntimeError(f"collector did not start: {output}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
