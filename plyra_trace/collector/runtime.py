"""The parts of a running collector wired together: storage, pricer, normaliser, writer, stream."""

from __future__ import annotations

from dataclasses import dataclass

from plyra_trace.collector.auth import KeyGate
from plyra_trace.collector.backpressure import InflightBudget
from plyra_trace.collector.config import CollectorConfig
from plyra_trace.collector.events import Broadcaster
from plyra_trace.collector.normalise import Normaliser
from plyra_trace.collector.pricing import Pricer
from plyra_trace.collector.storage import Storage, open_storage
from plyra_trace.collector.writer import Writer


@dataclass(slots=True)
class Runtime:
    """Everything the HTTP and gRPC front ends share; one per collector process."""

    config: CollectorConfig
    storage: Storage
    normaliser: Normaliser
    writer: Writer
    broadcaster: Broadcaster
    budget: InflightBudget
    keys: KeyGate

    @classmethod
    def start(cls, config: CollectorConfig, storage: Storage | None = None) -> Runtime:
        """Open storage and start the writer thread."""
        storage = storage if storage is not None else open_storage(config.db_path)
        pricer = Pricer()
        broadcaster = Broadcaster()
        writer = Writer(
            storage,
            max_batch_spans=config.writer_max_batch_spans,
            on_commit=broadcaster.publish_write,
        )
        budget = InflightBudget(config.max_inflight_bytes)
        keys = KeyGate(storage, always=config.require_keys)
        normaliser = Normaliser(config, pricer)
        return cls(config, storage, normaliser, writer, broadcaster, budget, keys)

    def stop(self) -> None:
        """Commit queued spans, stop the writer, close storage."""
        self.writer.stop()
        self.storage.close()
