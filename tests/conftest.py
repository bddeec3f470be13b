"""Shared fixtures: an in-memory pipeline for SDK tests and a real OTLP receiver."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import plyra_trace
from tests.otlp_receiver import OTLPReceiver


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """``plyra_trace.init()`` exporting synchronously into memory; shut down afterwards."""
    memory = InMemorySpanExporter()
    handle = plyra_trace.init("test-project", exporter=memory, batch=False, console=False)
    yield memory
    handle.shutdown()


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    """A real OTLP/HTTP receiver on 127.0.0.1 (its ``url`` is the base endpoint)."""
    with OTLPReceiver() as server:
        yield server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A real ``redis-server`` on a free port (Debian package; in CI it must run, not skip)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; CI must install it (.ci/run does)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise AssertionError("redis-server did not start")
        time.sleep(0.02)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(10)
