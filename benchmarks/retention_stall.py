"""How long retention makes ingest wait: write latency while expired traces are deleted.

Stores ``--expired`` spans dated three days ago, then writes 512-span batches through the storage
layer (as the collector's writer does) while a :class:`Retention` sweep (``--retention-days 1``)
deletes them, and again with nothing to delete. Prints the slowest and p99 write of each run and
the longest retention step. Target: retention adds < 200 ms to the slowest write.

Run: uv run python benchmarks/retention_stall.py [--store sqlite|postgres] [--expired 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.collector import BATCH, _preload, encode_batch, open_store
from plyra_trace.collector.config import CollectorConfig
from plyra_trace.collector.normalise import Normaliser
from plyra_trace.collector.pricing import Pricer
from plyra_trace.collector.retention import Retention
from plyra_trace.collector.storage import Storage, open_storage


def _writes(storage: Storage, batches: list, until: threading.Event | None) -> list[float]:
    """Write batches back to back (until ``until`` is set, or all once); latencies in ms."""
    latencies = []
    for spans in batches:
        started = time.perf_counter()
        storage.write(spans)
        latencies.append((time.perf_counter() - started) * 1000)
        if until is not None and until.is_set():
            break
    return latencies


def _report(name: str, latencies: list[float]) -> None:
    p99 = statistics.quantiles(latencies, n=100)[-1] if len(latencies) >= 100 else max(latencies)
    print(
        f"{name}: {len(latencies)} writes, p50 {statistics.median(latencies):.0f} ms,"
        f" p99 {p99:.0f} ms, slowest {max(latencies):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="sqlite", help="sqlite or postgres")
    parser.add_argument("--expired", type=int, default=200_000, help="expired spans to delete")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db, cluster = open_store(args.store, f"{tmp}/stall.db")
        try:
            _preload(db, args.expired, age_ns=3 * 86_400 * 10**9, first_seed=3 * 10**8)
            normaliser = Normaliser(CollectorConfig(), Pricer())
            batches = []
            for seed in range(400):
                request = ExportTraceServiceRequest()
                request.ParseFromString(encode_batch(seed))
                batches.append(normaliser.request(request).spans)
            storage = open_storage(db)
            done = threading.Event()
            steps: list[float] = []
            original = storage.delete_expired

            def _timed(cutoff: int, limit: int) -> int:
                started = time.perf_counter()
                deleted = original(cutoff, limit)
                steps.append((time.perf_counter() - started) * 1000)
                if deleted == 0:
                    done.set()
                return deleted

            storage.delete_expired = _timed  # type: ignore[method-assign]
            retention = Retention(storage, 1.0, interval_s=3600)
            during = _writes(storage, batches[:200], done)
            done.wait()
            retention.stop()
            after = _writes(storage, batches[200 : 200 + len(during)], None)
            storage.close()
        finally:
            if cluster is not None:
                cluster.close()
    print(f"store: {args.store}, expired spans deleted: {args.expired:,}, batch: {BATCH} spans")
    _report("writes while retention deletes", during)
    _report("writes with nothing to delete", after)
    print(f"retention steps: {len(steps)}, longest {max(steps):.0f} ms")


if __name__ == "__main__":
    main()
