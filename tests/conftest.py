"""Shared fixtures: an in-memory pipeline for SDK tests and a real OTLP receiver."""

from __future__ import annotations

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
