"""The parts of a running collector wired together: storage, pricer, normaliser, writer, stream."""

from __future__ import annotations

from dataclasses import dataclass

from plyra_trace.collector.auth import KeyGate
from plyra_trace.collector.backpressure import InflightBudget
from plyra_trace.collector.config import CollectorConfig
from plyra_trace.collector.events import Broadcaster
from plyra_trace.collector.normalise import Normaliser
from plyra_trace.collector.pricing import Pricer
from plyra_trace.collector.retention import Retention
from plyra_trace.collector.sampling.decider import Decider
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
    retention: Retention | None = None
    decider: Decider | None = None

    @classmethod
    def start(cls, config: CollectorConfig, storage: Storage | None = None) -> Runtime:
        """Open storage, start the writer thread, and announce other replicas' writes too."""
        storage = storage if storage is not None else open_storage(config.db_path)
        pricer = Pricer()
        broadcaster = Broadcaster()
        storage.watch(broadcaster.publish_write)
        writer = Writer(
            storage,
            max_batch_spans=config.writer_max_batch_spans,
            on_commit=broadcaster.publish_write,
        )
        retention = None
        if config.retention_days is not None:
            retention = Retention(storage, config.retention_days)
        budget = InflightBudget(config.max_inflight_bytes)
        keys = KeyGate(storage, always=config.require_keys)
        decider = Decider.launch(storage, config.sampling)
        normaliser = Normaliser(config, pricer)
        return cls(
            config, storage, normaliser, writer, broadcaster, budget, keys, retention, decider
        )

    def stop(self) -> None:
        """Stop retention and sampling decisions, commit queued spans, stop the writer, close
        storage."""
        if self.retention is not None:
            self.retention.stop()
        if self.decider is not None:
            self.decider.stop()
        self.writer.stop()
        self.storage.close()
