"""SQLite only: the WAL stays bounded while readers never stop (checkpoints the writer chooses)."""

from __future__ import annotations

import threading
from pathlib import Path

from plyra_trace.collector.model import SpanRecord, TraceFilter
from plyra_trace.collector.storage.sqlite import SQLiteStorage

LIMIT = 512 * 1024


def _batch(n: int, size: int = 200) -> list[SpanRecord]:
    base = 1_700_000_000 * 10**9 + n * 10**9
    return [
        SpanRecord(
            trace_id=f"{n:016x}{i // 10:016x}",
            span_id=f"{i:016x}",
            parent_id=None if i % 10 == 0 else f"{i - i % 10:016x}",
            name="step",
            otel_kind="INTERNAL",
            kind="LLM" if i % 3 else "AGENT",
            service="svc",
            project="p",
            start_ns=base + i,
            end_ns=base + i + 1000,
            agent=f"agent-{i % 4}" if i % 10 == 0 else None,
            model="gpt-4o" if i % 3 else None,
            input_tokens=10,
            output_tokens=5,
            total_tokens=15,
            cost=0.001,
            attributes={"payload": "x" * 300},
        )
        for i in range(size)
    ]


def test_wal_stays_bounded_while_readers_never_stop(tmp_path: Path) -> None:
    store = SQLiteStorage(str(tmp_path / "c.db"), wal_limit_bytes=LIMIT)
    stop = threading.Event()
    reads = [0]
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                store.list_traces(TraceFilter(), None, 50)
                store.cost_breakdown("model", None, None, 20)
                store.agents_graph(None, None)
                reads[0] += 1
        except BaseException as error:  # surfaced below
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    largest = 0
    try:
        for n in range(60):
            store.write(_batch(n))
            largest = max(largest, store.wal_bytes())
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    store.close()
    assert not errors
    assert reads[0] > 10, "readers ran throughout"
    assert store.checkpoints[0] > 0
    # One batch's pages past the limit at most before the writer truncates the log again.
    assert largest < 2 * LIMIT, largest  # unbounded, the same run reaches ~20x LIMIT
