"""Export accounting: every span made is delivered, dropped, failed or still queued, exactly;
the default queue absorbs a burst; the OTLP exporter waits as a busy collector asks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import plyra_trace
from tests.otlp_receiver import OTLPReceiver


class SlowExporter(SpanExporter):
    """Takes ``delay`` seconds per batch; fails the first ``failures`` calls; keeps the rest."""

    def __init__(self, delay: float = 0.0, failures: int = 0) -> None:
        self.delay = delay
        self.failures = failures
        self.delivered = 0
        self.calls = 0
        self.release = threading.Event()
        self.release.set()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        time.sleep(self.delay)
        self.calls += 1
        if self.calls <= self.failures:
            return SpanExportResult.FAILURE
        self.delivered += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@plyra_trace.tool(name="unit", capture_input=False, capture_output=False)
def unit(i: int) -> int:
    return i


def burst(count: int) -> None:
    for i in range(count):  # as fast as one thread can
        unit(i)


@pytest.mark.parametrize("attempt", [1, 2])  # the second is said too (no 20 s duplicate filter)
def test_a_burst_into_a_small_queue_counts_every_drop_exactly(caplog, attempt: int):
    slow = SlowExporter(delay=0.02)
    handle = plyra_trace.init("burst", exporter=slow, console=False, max_queue_size=256)
    with caplog.at_level(logging.WARNING):
        burst(5_000)
    said = [r for r in caplog.records if "export queue full at" in r.getMessage()]
    assert len(said) == 1 and "max_queue_size" in said[0].getMessage()
    report = handle.shutdown(timeout=20)
    status = handle.status()
    assert status.dropped_spans > 0
    assert slow.delivered + status.dropped_spans == 5_000
    assert status.exported_spans == slow.delivered
    assert status.queued_spans == 0 and status.failed_exports == 0
    assert not report and report.dropped_spans == status.dropped_spans


def test_the_default_queue_absorbs_ten_thousand_spans_without_a_drop():
    slow = SlowExporter(delay=0.01)  # a collector slower than the burst
    handle = plyra_trace.init("defaults", exporter=slow, console=False)
    burst(10_000)
    assert handle.status().dropped_spans == 0
    report = handle.shutdown(timeout=20)
    assert report and report.undelivered == 0
    assert slow.delivered == 10_000
    assert handle.status().exported_spans == 10_000


def test_failed_exports_count_spans_and_calls_and_shutdown_says_so(caplog):
    failing = SlowExporter(failures=2)
    handle = plyra_trace.init(
        "failing", exporter=failing, console=False, schedule_delay_millis=10_000
    )
    for round_ in range(3):
        burst(7)
        report = handle.force_flush()
        assert bool(report) is (round_ == 2)
        assert report.failed_exports == (7 if round_ < 2 else 0)
    assert plyra_trace.status() == handle.status()
    with caplog.at_level(logging.WARNING, logger="plyra_trace"):
        final = handle.shutdown()
    status = handle.status()
    assert (status.failed_exports, status.failed_export_calls, status.exported_spans) == (14, 2, 7)
    assert (handle.failed_exports, handle.failed_export_calls) == (14, 2)
    assert final  # nothing new was lost since the last report
    (warning,) = [r for r in caplog.records if "not every span" in r.getMessage()]
    assert "14 in 2 failed export calls" in warning.getMessage()
    assert plyra_trace.status() is None  # nothing in force after shutdown


def test_force_flush_returns_within_its_timeout_and_reports_what_is_still_queued():
    stuck = SlowExporter()
    stuck.release.clear()
    handle = plyra_trace.init("stuck", exporter=stuck, console=False)
    burst(600)  # more than one batch: one batch hangs in export, the rest waits in the queue
    started = time.monotonic()
    report = handle.force_flush(timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert not report and report.timed_out and report.queued_spans > 0
    stuck.release.set()
    assert handle.shutdown(timeout=10)
    assert stuck.delivered == 600


def test_shutdown_is_quiet_when_everything_was_delivered(caplog):
    handle = plyra_trace.init("quiet", exporter=SlowExporter(), console=False)
    burst(10)
    with caplog.at_level(logging.WARNING, logger="plyra_trace"):
        assert handle.shutdown()
    assert not [r for r in caplog.records if "not every span" in r.getMessage()]


@pytest.mark.parametrize("busy", [503, 429])
def test_the_otlp_exporter_waits_as_retry_after_says(busy: int):
    with OTLPReceiver(script=[(busy, {"Retry-After": "1"})]) as receiver:
        handle = plyra_trace.init("retry", endpoint=receiver.url, timeout=5)
        burst(3)
        report = handle.force_flush(timeout=8)
        spans = receiver.wait_for(lambda spans: len(spans) == 3)
        assert report, report
        first, second = receiver.arrivals[:2]
        assert 1.0 <= second - first < 2.5  # waited as told, and not much longer
        assert {span.name for span in spans} == {"unit"}
        status = handle.status()
        assert (status.exported_spans, status.failed_exports) == (3, 0)
        handle.shutdown()


def test_a_forked_child_keeps_its_own_books_even_if_the_parent_held_their_lock():
    import os
    import signal

    handle = plyra_trace.init("forking", exporter=SlowExporter(), console=False)
    burst(20)
    assert handle.force_flush()
    health = handle._health
    with health._lock:  # as the export thread may hold it at the moment of a fork
        pid = os.fork()
        if pid == 0:  # the child: its books start empty and its lock is free
            status = handle.status()
            os._exit(0 if (status.exported_spans, status.queued_spans) == (0, 0) else 3)
    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    if done == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the child deadlocked on the export books' lock")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert handle.status().exported_spans == 20  # the parent's books are untouched
    handle.shutdown()
